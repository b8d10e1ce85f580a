"""Checkpoint loading: strict key/shape check with a listing, clear errors for missing pieces."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from gr00t_rlhf_train.model.checkpoint import (CheckpointError, CheckpointMismatchError, load_official,
                                               load_policy)
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.tokenizer import TokenizerNotFoundError


def test_mismatched_keys_and_shapes_are_listed(tiny_policy, tmp_path):
    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    del state["backbone.linear.bias"]
    state["action_head.extra.weight"] = torch.zeros(2)
    state["action_head.position_embedding.weight"] = torch.zeros(7, 64)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as e:
        Gr00tPolicy.from_pretrained(ckpt)
    msg = str(e.value)
    assert "missing keys (1)" in msg and "backbone.linear.bias" in msg
    assert "unexpected keys (1)" in msg and "action_head.extra.weight" in msg
    assert "shape mismatches (1)" in msg and "action_head.position_embedding.weight: checkpoint (7, 64)" in msg


def test_pickled_weights_are_refused(tiny_policy, tmp_path):
    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickled weights are not loaded"):
        load_policy(ckpt)


def _official_dir(tmp_path, with_metadata=True):
    d = tmp_path / "official"
    (d / "experiment_cfg").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "gr00t_n1", "action_horizon": 16, "action_dim": 32,
                                               "backbone_cfg": {"select_layer": 12},
                                               "action_head_cfg": {"diffusion_model_cfg": {"num_layers": 16}}}))
    save_file({"backbone.linear.weight": torch.zeros(1536, 2048), "action_head.bogus": torch.zeros(3)},
              str(d / "model.safetensors"))
    if with_metadata:
        stats = {"max": [5.0], "min": [-5.0], "mean": [0.0], "std": [1.0], "q01": [-5.0], "q99": [5.0]}
        (d / "experiment_cfg" / "metadata.json").write_text(json.dumps({"new_embodiment": {
            "statistics": {"state": {"left_wheel": stats}, "action": {"wheel_commands": {
                k: v * 2 for k, v in stats.items()}}},
            "modalities": {"video": {"ego_view": {}}, "state": {"left_wheel": {"shape": [1]}},
                           "action": {"wheel_commands": {"shape": [2]}}}}}))
    return d


def test_official_layout_is_checked_strictly_before_loading(tmp_path):
    d = _official_dir(tmp_path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_official(d, tokenizer="tiny")
    msg = str(e.value)
    assert "missing keys (801)" in msg and "action_head.bogus" in msg
    assert "action_head.model.timestep_encoder.timestep_embedder.linear_1.weight (1536, 256)" in msg
    assert "and 751 more" in msg


def test_official_layout_needs_metadata_and_tokenizer(tmp_path):
    d = _official_dir(tmp_path, with_metadata=False)
    with pytest.raises(CheckpointError, match="metadata.json is missing"):
        load_official(d, tokenizer="tiny")
    d2 = _official_dir(tmp_path / "b")
    with pytest.raises(TokenizerNotFoundError, match="ships no tokenizer"):
        load_official(d2)


def test_missing_tokenizer_directory_is_a_clear_error(tiny_policy, tmp_path):
    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(TokenizerNotFoundError, match="does not exist"):
        Gr00tPolicy.from_pretrained(ckpt, tokenizer=tmp_path / "nowhere")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="neither"):
        load_policy(tmp_path)


def _tiny_official_dir(tiny_policy, tmp_path, extra: dict):
    """An official-layout directory holding the tiny model's weights plus ``extra`` tensors."""
    d = _official_dir(tmp_path)
    cfg = tiny_policy.model.config
    head = cfg.action_head
    (d / "config.json").write_text(json.dumps({"model_type": "gr00t_n1", "action_horizon": head.action_horizon,
                                               "action_dim": head.action_dim, "backbone_cfg": {"select_layer": 2},
                                               "action_head_cfg": {"diffusion_model_cfg": {}}}))
    state = {k: v.detach().clone().contiguous() for k, v in tiny_policy.model.state_dict().items()}
    save_file(state | extra, str(d / "model.safetensors"))
    return d


def test_official_decode_layer_extras_are_ignored_with_one_log_line(tiny_policy, tmp_path, caplog, monkeypatch):
    from gr00t_rlhf_train.model import checkpoint

    # the tiny architecture stands in for the 2B one (an official config.json maps onto the 2B preset)
    monkeypatch.setattr(checkpoint, "config_from_official", lambda cfg: tiny_policy.model.config)
    extras = {"action_head.decode_layer.weight": torch.ones(2, 64), "action_head.decode_layer.bias": torch.ones(2)}
    d = _tiny_official_dir(tiny_policy, tmp_path, extras)
    with caplog.at_level("INFO", logger="gr00t_rlhf_train.model.checkpoint"):
        model, _ = checkpoint.read_official(d, tokenizer="tiny")
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(lines) == 1 and "action_head.decode_layer.bias, action_head.decode_layer.weight" in lines[0]
    assert "decode_layer" not in " ".join(model.state_dict())
    torch.testing.assert_close(model.state_dict()["backbone.linear.weight"],
                               tiny_policy.model.state_dict()["backbone.linear.weight"])


def test_official_foreign_extra_is_still_rejected(tiny_policy, tmp_path, monkeypatch):
    from gr00t_rlhf_train.model import checkpoint

    monkeypatch.setattr(checkpoint, "config_from_official", lambda cfg: tiny_policy.model.config)
    extras = {"action_head.decode_layer.weight": torch.ones(2, 64), "action_head.decode_layer2.weight": torch.ones(2)}
    d = _tiny_official_dir(tiny_policy, tmp_path, extras)
    with pytest.raises(CheckpointMismatchError) as e:
        checkpoint.read_official(d, tokenizer="tiny")
    msg = str(e.value)
    assert "unexpected keys (1)" in msg and "action_head.decode_layer2.weight" in msg
    assert "decode_layer.weight" not in msg


def test_our_layout_does_not_accept_the_official_extras(tiny_policy, tmp_path):
    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    save_file(state | {"action_head.decode_layer.bias": torch.ones(2)}, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="action_head.decode_layer.bias"):
        Gr00tPolicy.from_pretrained(ckpt)
