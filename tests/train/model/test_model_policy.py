"""The tiny policy: shapes, learning, determinism, save -> load identity."""
from __future__ import annotations

import numpy as np
import torch

from gr00t_rlhf_train.model.policy import Gr00tPolicy


def test_forward_backward_shapes(tiny_policy, observation):
    batch = tiny_policy.processor(observation(batch=4, actions=True))
    head = tiny_policy.config.action_head
    assert batch["pixel_values"].shape == (4, 3, 56, 56)
    assert batch["state"].shape == (4, 1, head.max_state_dim)
    assert batch["action"].shape == batch["action_mask"].shape == (4, head.action_horizon, head.action_dim)
    feats, mask = tiny_policy.model.features(batch)
    assert feats.shape == (*batch["input_ids"].shape, tiny_policy.config.backbone.project_to_dim)
    loss = tiny_policy.model.loss(batch)
    loss.backward()
    grads = [p.grad for p in tiny_policy.model.parameters() if p.requires_grad]
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(g is not None for g in grads)
    tiny_policy.model.zero_grad(set_to_none=True)


def test_loss_falls_when_overfitting_one_batch(observation):
    policy = Gr00tPolicy.from_config("tiny", seed=1)
    batch = policy.processor(observation(batch=8, actions=True, seed=3))
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    policy.model.train()
    losses = []
    for _ in range(25):
        torch.manual_seed(0)                      # same noise and flow time every step: a fixed regression
        loss = policy.model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


def test_get_action_shape_and_seed(tiny_policy, observation):
    obs = observation()
    a = tiny_policy.get_action(obs, seed=7)
    assert set(a) == {"action.wheel_commands"}
    assert a["action.wheel_commands"].shape == (16, 2)
    assert np.isfinite(a["action.wheel_commands"]).all()      # official min_max: the inverse is not clipped
    b = tiny_policy.get_action(obs, seed=7)
    np.testing.assert_array_equal(a["action.wheel_commands"], b["action.wheel_commands"])
    c = tiny_policy.get_action(obs, seed=8, num_steps=2)
    assert not np.array_equal(a["action.wheel_commands"], c["action.wheel_commands"])
    batched = tiny_policy.get_action(observation(batch=3), seed=0)
    assert batched["action.wheel_commands"].shape == (3, 16, 2)


def test_save_load_gives_identical_outputs(tiny_policy, observation, tmp_path):
    tiny_policy.feedback_vocabulary = {0: "Doing bad", 1: "Doing good"}
    tiny_policy.save_pretrained(tmp_path / "ckpt", extra={"step": 3})
    assert not list((tmp_path / "ckpt").glob("*.bin")) and not list((tmp_path / "ckpt").glob("*.pt"))
    loaded = Gr00tPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.feedback_vocabulary == {0: "Doing bad", 1: "Doing good"}
    assert loaded.processor.modality == tiny_policy.processor.modality
    assert loaded.processor.stats == tiny_policy.processor.stats
    for k, v in tiny_policy.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v, rtol=0, atol=0)
    obs = observation(seed=5)
    np.testing.assert_array_equal(tiny_policy.get_action(obs, seed=1)["action.wheel_commands"],
                                  loaded.get_action(obs, seed=1)["action.wheel_commands"])


def test_from_pretrained_passes_the_data_config_to_an_official_directory(tiny_policy, tmp_path, monkeypatch):
    from test_model_semantics_wiring import official_dir

    from gr00t_rlhf_train.model.configuration import DataConfig

    d = official_dir(tiny_policy, tmp_path, monkeypatch)
    dc = DataConfig(state_keys=["state.gripper", "state.arm"], action_keys=["action.arm"], state_mode="q99")
    policy = Gr00tPolicy.from_pretrained(d, tokenizer="tiny", data_config=dc)
    assert policy.config.data == dc and list(policy.processor.modality.state) == ["gripper", "arm"]
    assert list(policy.processor.modality.action) == ["arm"] and policy.processor.modality.state_mode == "q99"
    default = Gr00tPolicy.from_pretrained(d, tokenizer="tiny")           # None: every key in the file's order
    assert list(default.processor.modality.state) == ["arm", "gripper"]
