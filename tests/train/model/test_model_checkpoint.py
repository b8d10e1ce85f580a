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
