"""The reward model on the tiny backbone: both heads, LoRA, learning, save -> load, no label leak."""
from __future__ import annotations

import pytest
import torch

from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel

SMALL_DIT = dict(num_layers=2, num_heads=4, head_dim=16, hidden_size=64)


@pytest.mark.parametrize("kind,tuning", [("dit", "lora"), ("mlp", "frozen"), ("dit", "full")])
def test_shapes_and_loss_falls(tiny_policy, observation, kind, tuning):
    torch.manual_seed(0)
    rm = RewardModel.from_policy(tiny_policy, RewardHeadConfig(kind=kind, horizon=2, **SMALL_DIT), tuning=tuning)
    batch = rm.prepare(observation(batch=8, horizon=2))
    assert batch["state"].shape[:2] == (8, 2)
    assert batch["pixel_values"].shape[0] == 16
    outputs = rm(batch)
    assert all(o.shape == (8,) for o in outputs)
    target = torch.linspace(-1, 1, 8)
    params = [p for p in rm.parameters() if p.requires_grad]
    if tuning == "frozen":
        assert not any(p.requires_grad for p in rm.backbone.parameters())
    if tuning == "lora":
        trainable = {n for n, p in rm.backbone.named_parameters() if p.requires_grad}
        assert trainable and all("lora_" in n for n in trainable)
    # 3e-3: with the official prompt (system turn first, 39 tokens) 1e-3 needs more than 30 steps
    opt = torch.optim.AdamW(params, lr=3e-3)
    rm.train()
    losses = []
    for _ in range(30):
        loss = rm.loss(batch, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the mean of the last 5 steps: full tuning at 3e-3 has one-step spikes (dit-full: 0.1 -> 0.33 at step 30
    # with the LLM's padding index 2, whose row no longer trains), which a single-step check mistakes for no learning
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses


def test_score_single_and_batch_and_save_load(tiny_policy, observation, tmp_path):
    rm = RewardModel.from_policy(tiny_policy, RewardHeadConfig(kind="dit", horizon=3, **SMALL_DIT), tuning="lora")
    clip = observation(horizon=3)
    r = rm.score(clip)
    assert isinstance(r, float)
    many = rm.score(observation(batch=4, horizon=3))
    assert many.shape == (4,)
    rm.save_pretrained(tmp_path / "rm", feedback_vocabulary={0: "Doing bad", 1: "Doing good"})
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.head_config == rm.head_config and loaded.tuning == "lora"
    assert loaded.score(clip) == r


def test_feedback_never_reaches_the_model(tiny_policy, observation):
    rm = RewardModel.from_policy(tiny_policy, RewardHeadConfig(kind="mlp", horizon=1), tuning="frozen")
    clip = observation(horizon=1)
    good = rm.score(clip | {"annotation.human.validity": [1], "feedback": "Doing good"})
    bad = rm.score(clip | {"annotation.human.validity": [0], "feedback": "Doing bad"})
    assert good == bad == rm.score(clip)
    text = rm.processor.tokenizer.decode(rm.prepare(clip)["input_ids"][0])
    assert "Find Blue cube" in text and "Doing" not in text
