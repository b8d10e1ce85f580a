"""The official layout: the data config's ordered keys make the state/action vectors (Isaac-GR00T
gr00t/experiment/data_config.py + ConcatTransform), and the action head's official training details
(gr00t/model/action_head/flow_matching_action_head.py, N1 era)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.model.action_head import FlowMatchingActionHead, masked_mse
from gr00t_rlhf_train.model.checkpoint import read_meta
from gr00t_rlhf_train.model.configuration import (DATA_CONFIGS, ConfigError, DataConfig, ModelConfig,
                                                  add_data_config_arguments, data_config, data_config_from_args,
                                                  preset)
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.processor import ModalityConfig

GOLDEN = json.loads((Path(__file__).parent / "golden_b" / "metadata.json").read_text())["new_embodiment"]
STATS = {g: GOLDEN["statistics"][g] for g in ("state", "action")}
# what FrameCache.modality_dims() gives for the seed datasets (modality.json order)
DIMS = {"video": ["ego_view"], "state": {"left_wheel": 1, "right_wheel": 1, "acceleration": 1},
        "action": {"wheel_commands": 2}}


# -- the data config ------------------------------------------------------------------------------------
def test_default_is_every_key_in_modality_json_order():
    assert DataConfig().resolve(DIMS) == DIMS
    assert data_config("wheeled").resolve(DIMS) == DIMS | {"state_mode": "min_max", "action_mode": "min_max"}


def test_keys_select_and_order_the_vectors():
    dc = DataConfig(state_keys=["state.acceleration", "state.left_wheel"], video_keys="video.ego_view")
    got = dc.resolve(DIMS)
    assert list(got["state"].items()) == [("acceleration", 1), ("left_wheel", 1)]
    assert got["action"] == DIMS["action"] and got["video"] == ["ego_view"]


def test_unknown_key_is_a_one_line_error_naming_key_and_file():
    with pytest.raises(ConfigError) as e:
        DataConfig(state_keys=["state.left_wheel", "state.gripper"]).resolve(DIMS, "/data/x/meta/modality.json")
    msg = str(e.value)
    assert "\n" not in msg and "state.gripper is not in /data/x/meta/modality.json" in msg
    assert "state.left_wheel, state.right_wheel, state.acceleration" in msg
    with pytest.raises(ConfigError, match="video_keys: video.webcam is not in meta/modality.json"):
        data_config("so100").resolve(DIMS)


@pytest.mark.parametrize("kwargs,match", [
    ({"state_keys": ["left_wheel"]}, "'left_wheel' is not a 'state.<name>' key"),
    ({"action_keys": ["action.a", "action.a"]}, "'action.a' is given twice"),
    ({"video_keys": []}, "must be a non-empty list"),
    ({"state_keys": ["action.wheel_commands"]}, "is not a 'state.<name>' key"),
])
def test_malformed_keys_are_refused_on_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**kwargs)


def test_command_line_and_yaml(tmp_path):
    p = argparse.ArgumentParser()
    p.add_argument("--data", action="append")                # the training commands' flag: no clash with --data-config
    add_data_config_arguments(p)
    assert p.parse_args(["--data", "a", "--data-config", "so100"]).data == ["a"]
    dc = data_config_from_args(p.parse_args(["--state-keys", "state.right_wheel,state.left_wheel",
                                             "--action-mode", "q99"]))
    assert dc.state_keys == ["state.right_wheel", "state.left_wheel"] and dc.action_mode == "q99"
    assert dc.normalization == "official" and dc.action_keys is None
    assert data_config_from_args(p.parse_args([])) == DataConfig()
    so100 = data_config_from_args(p.parse_args(["--data-config", "so100", "--video-keys", "video.front"]))
    assert so100.video_keys == ["video.front"] and so100.state_keys == DATA_CONFIGS["so100"]["state_keys"]
    f = tmp_path / "layout.yaml"
    f.write_text("state_keys: [state.acceleration]\naction_keys: [action.wheel_commands]\nstate_mode: mean_std\n")
    dc = data_config_from_args(p.parse_args(["--data-config", str(f)]))
    assert dc.state_keys == ["state.acceleration"] and dc.state_mode == "mean_std"
    assert dc.normalization == "official"
    f.write_text("state_key: [state.acceleration]\n")
    with pytest.raises(ConfigError, match=r"--data-config .*layout.yaml: unknown fields \['state_key'\]"):
        data_config_from_args(p.parse_args(["--data-config", str(f)]))
    with pytest.raises(ConfigError, match="--data-config nope: neither a named data config"):
        data_config_from_args(p.parse_args(["--data-config", "nope"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--action-mode", "scale"])            # scale has no inverse: never an action mode


def test_layout_decides_the_state_vector_and_is_saved_with_the_checkpoint(tmp_path, tiny_policy):
    """A reordered data config reorders the model's state vector; the checkpoint JSON keeps the data config."""
    dc = DataConfig(state_keys=["state.right_wheel", "state.acceleration", "state.left_wheel"])
    config = preset("tiny")
    config.data = dc
    modality = ModalityConfig(**dc.resolve(DIMS))
    policy = Gr00tPolicy.from_config(config, modality=modality, stats=STATS, tokenizer=tiny_policy.processor.tokenizer)
    obs = {"video.ego_view": np.zeros((48, 64, 3), np.uint8), "task": "Find Blue cube",
           "state.left_wheel": np.array([1.0]), "state.right_wheel": np.array([2.0]),
           "state.acceleration": np.array([0.5])}
    state = policy.processor(obs)["state"][0, 0]
    # min_max inside the range: right 2 -> 0.4, acceleration 0.5 on [0, 2] -> -0.5, left 1 -> 0.2; then zero padding
    np.testing.assert_allclose(state[:3].numpy(), [0.4, -0.5, 0.2], atol=1e-6)
    assert not state[3:].any()
    meta = read_meta(policy.save_pretrained(tmp_path / "ckpt"))
    assert meta["model"]["data"]["state_keys"] == dc.state_keys
    assert list(meta["modality"]["state"]) == ["right_wheel", "acceleration", "left_wheel"]
    assert ModelConfig.from_dict(meta["model"]).data == dc


def test_official_metadata_keys_resolve_too():
    """The dims of an official experiment_cfg/metadata.json (statistics order) go through the same selection."""
    dims = {"video": list(GOLDEN["modalities"]["video"]),
            "state": {n: m["shape"][0] for n, m in GOLDEN["modalities"]["state"].items()},
            "action": {n: m["shape"][0] for n, m in GOLDEN["modalities"]["action"].items()}}
    got = DataConfig(state_keys=["state.left_wheel", "state.right_wheel"]).resolve(dims, "experiment_cfg/metadata.json")
    assert got["state"] == {"left_wheel": 1, "right_wheel": 1}
    with pytest.raises(ConfigError, match="state.single_arm is not in experiment_cfg/metadata.json"):
        data_config("so100").resolve(dims | {"video": ["webcam"]}, "experiment_cfg/metadata.json")


# -- the action head's training details (official FlowmatchingActionHead) --------------------------------
@pytest.fixture
def head() -> FlowMatchingActionHead:
    torch.manual_seed(0)
    return FlowMatchingActionHead(preset("tiny").action_head)


def test_position_embedding_starts_like_official(head):
    std = head.position_embedding.weight.std().item()
    assert 0.015 < std < 0.025                                   # N(0, 0.02), not nn.Embedding's N(0, 1)
    assert head.position_embedding.padding_idx is None           # official: no padding index


def test_time_is_sampled_as_official(head):
    torch.manual_seed(1)
    t = head.sample_time(4096, torch.device("cpu"))
    torch.manual_seed(1)
    b = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((4096,))
    torch.testing.assert_close(t, (0.999 - b) / 0.999, rtol=0, atol=0)
    torch.manual_seed(1)
    tb = head.sample_time(8, torch.device("cpu"), torch.bfloat16)       # cast first, computed in bf16
    torch.manual_seed(1)
    b16 = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((8,)).to(torch.bfloat16)
    assert tb.dtype == torch.bfloat16 and torch.equal(tb, (0.999 - b16) / 0.999)


def test_noise_then_time_draw_order_and_masked_loss(head):
    """As official forward: noise drawn first, then t; loss = sum(mse * mask) / sum(mask)."""
    c = head.config
    b = 3
    feats, fmask = torch.randn(b, 5, c.backbone_embedding_dim), torch.ones(b, 5, dtype=torch.bool)
    state, actions = torch.randn(b, 1, c.max_state_dim), torch.randn(b, c.action_horizon, c.action_dim)
    emb = torch.full((b,), 31, dtype=torch.long)
    torch.manual_seed(7)
    terms = head.flow_terms(feats, fmask, state, actions, emb)
    torch.manual_seed(7)
    noise = torch.randn(actions.shape)
    t = head.sample_time(b, torch.device("cpu"))
    torch.testing.assert_close(terms["target"], actions - noise)
    torch.testing.assert_close(terms["t_bucket"], (t * c.num_timestep_buckets).long())
    mask = torch.zeros_like(actions)
    mask[..., :2] = 1
    want = (torch.nn.functional.mse_loss(terms["pred"], terms["target"], reduction="none") * mask).sum() / mask.sum()
    torch.testing.assert_close(masked_mse(terms["pred"], terms["target"], mask), want)


def test_frozen_parts_stay_in_eval_mode_while_training(head):
    """Official set_frozen_modules_to_eval_mode: a frozen DiT keeps its dropout off in training."""
    head.train()
    assert head.model.training and head.frozen_parts() == []
    head.model.requires_grad_(False)
    head.train()
    assert not head.model.training and head.state_encoder.training and head.action_decoder.training
    assert head.frozen_parts() == ["model"]
    head.eval()
    assert not head.training and not head.state_encoder.training


def test_cross_attention_mask_as_official_and_kept_for_old_checkpoints():
    """New heads and official checkpoints do not mask padded VL tokens (official N1 DiT); a checkpoint JSON
    written before ``mask_context`` existed keeps masking them."""
    config = preset("tiny")
    assert config.action_head.mask_context is False
    assert FlowMatchingActionHead(config.action_head).model.mask_context is False
    saved = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(saved).action_head.mask_context is False
    del saved["action_head"]["mask_context"]
    old = ModelConfig.from_dict(saved)
    assert old.action_head.mask_context is True and FlowMatchingActionHead(old.action_head).model.mask_context
    with pytest.raises(ConfigError, match="ActionHeadConfig.mask_context = 1: must be true or false"):
        ModelConfig.from_dict(saved | {"action_head": saved["action_head"] | {"mask_context": 1}})
