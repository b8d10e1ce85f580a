"""The action-conditioned reward model (``action_horizon`` K > 0): shapes, one-line errors, normalisation,
best-of-N candidates, old checkpoints, save -> load, and the reward learning to depend on the actions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.model.configuration import ConfigError
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel

SMALL = dict(num_layers=2, num_heads=4, head_dim=16, hidden_size=64)
K = 4


def _rm(policy, kind="dit", k=K, horizon=2, tuning="frozen"):
    torch.manual_seed(0)
    return RewardModel.from_policy(policy, RewardHeadConfig(kind=kind, horizon=horizon, action_horizon=k, **SMALL),
                                   tuning=tuning)


def _actions(*lead, seed=0):
    return np.random.default_rng(seed).uniform(-5, 5, (*lead, K, 2))


@pytest.mark.parametrize("kind", ["mlp", "dit"])
def test_shapes_batches_and_candidates(tiny_policy, observation, kind):
    rm = _rm(tiny_policy, kind)
    clip = observation(horizon=2)
    batch = rm.prepare(clip | {"actions": _actions()})
    assert batch["actions"].shape == (1, K, tiny_policy.config.action_head.action_dim)
    assert isinstance(rm.score(clip | {"actions": _actions()}), float)
    clips = observation(batch=3, horizon=2)
    assert rm.score(clips | {"actions": _actions(3)}).shape == (3,)
    # best-of-N: one clip, N candidate chunks -> N rewards, each the reward of that clip with that chunk
    candidates = _actions(5, seed=1)
    scores = rm.score(clip | {"actions": candidates})
    assert scores.shape == (5,)
    one_by_one = [rm.score(clip | {"actions": c}) for c in candidates]
    np.testing.assert_allclose(scores, one_by_one, rtol=0, atol=1e-5)
    # the graph entry point (eager on a CPU) takes the actions as an input too
    np.testing.assert_allclose(rm.use_cuda_graphs().score(clip | {"actions": candidates}), scores, rtol=0, atol=1e-6)
    # and so does the whole fast path (uint8 frames preprocessed on the device, cached K/V, no masks)
    np.testing.assert_allclose(rm.use_fast_path().score(clip | {"actions": candidates}), scores, rtol=0, atol=1e-6)
    rm.use_fast_path(False)


def test_actions_are_normalised_with_the_checkpoint_statistics(tiny_policy, observation):
    rm = _rm(tiny_policy, "mlp")
    a = _actions()
    got = rm.prepare(observation(horizon=2) | {"actions": a})["actions"][0]        # [K, padded A]
    want = rm.processor.normalize_group(a, "action")                               # [K, 2]
    np.testing.assert_allclose(got[:, :2].numpy(), want, atol=1e-6)
    assert not got[:, 2:].any()                                                    # zero padding
    as_tensor = rm.prepare(observation(horizon=2) | {"actions": torch.as_tensor(a)})["actions"][0]
    assert torch.equal(as_tensor, got)


@pytest.mark.parametrize("actions,match", [
    (None, r"clip lacks 'actions'.*first 4 actions.*\[4, 2\]"),
    (np.zeros((3, 2)), r"clip\['actions'\]: expected \[4, 2\].*got \[3, 2\]"),
    (np.zeros((4, 3)), r"clip\['actions'\]: expected \[4, 2\].*got \[4, 3\]"),
    (np.zeros((1, 1, 4, 2)), r"clip\['actions'\]: expected.*got \[1, 1, 4, 2\]"),
    (np.full((4, 2), np.inf), r"clip\['actions'\]: 8 non-finite"),
    (np.array([["a", "b"]] * 4), r"clip\['actions'\]: expected numbers"),
])
def test_bad_actions_are_one_line_errors(tiny_policy, observation, actions, match):
    rm = _rm(tiny_policy, "mlp")
    clip = observation(horizon=2) | ({} if actions is None else {"actions": actions})
    with pytest.raises(ValueError, match=match) as e:
        rm.score(clip)
    assert "\n" not in str(e.value)


def test_batched_clips_need_one_chunk_each(tiny_policy, observation):
    rm = _rm(tiny_policy, "mlp")
    with pytest.raises(ValueError, match=r"expected \[3, 4, 2\].*got \[2, 4, 2\]"):
        rm.score(observation(batch=3, horizon=2) | {"actions": _actions(2)})


def test_a_model_without_actions_refuses_them(tiny_policy, observation):
    rm = _rm(tiny_policy, "dit", k=0)
    with pytest.raises(ValueError, match=r"clip\['actions'\]: this reward model takes no actions \(action_horizon = 0\)"):
        rm.score(observation(horizon=2) | {"actions": _actions()})
    with pytest.raises(ConfigError, match="action_horizon = -1"):
        RewardHeadConfig(action_horizon=-1)


@pytest.mark.parametrize("kind", ["mlp", "dit"])
def test_old_checkpoint_without_the_field_loads_and_scores_as_before(tiny_policy, observation, tmp_path, kind):
    rm = _rm(tiny_policy, kind, k=0)
    assert not any("action" in n for n, _ in rm.head.named_parameters())      # K = 0: the same weights as before
    clip = observation(horizon=2)
    before = rm.score(clip)
    rm.save_pretrained(tmp_path / "rm")
    meta_file = tmp_path / "rm" / "gr00t_rlhf.json"
    meta = json.loads(meta_file.read_text())
    del meta["head"]["reward_head"]["action_horizon"]                          # as written before actions existed
    meta_file.write_text(json.dumps(meta))
    old = RewardModel.from_pretrained(tmp_path / "rm")
    assert old.head_config.action_horizon == 0 and old.score(clip) == before


@pytest.mark.parametrize("kind", ["mlp", "dit"])
def test_save_load_with_actions_scores_identically(tiny_policy, observation, tmp_path, kind):
    rm = _rm(tiny_policy, kind, tuning="lora")
    clip = observation(horizon=2) | {"actions": _actions(6)}
    want = rm.score(clip)
    rm.save_pretrained(tmp_path / "rm")
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.head_config.action_horizon == K
    np.testing.assert_array_equal(loaded.score(clip), want)


@pytest.mark.parametrize("kind", ["mlp", "dit"])
def test_the_reward_learns_to_depend_on_the_actions(tiny_policy, observation, kind):
    """Label = 1 iff the left wheel command is positive (independent of the frames, state and task)."""
    rm = _rm(tiny_policy, kind, horizon=1)
    rng = np.random.default_rng(0)
    clips = observation(batch=16, horizon=1)
    actions = rng.uniform(-5, 5, (16, K, 2))
    actions[:, :, 0] = np.abs(actions[:, :, 0]) * np.where(np.arange(16) // 2 % 2 == 0, 1, -1)[:, None]
    target = torch.as_tensor(actions[:, 0, 0] > 0, dtype=torch.float32)
    batch = rm.prepare(clips | {"actions": actions})
    feats = rm.features(batch)                                                    # frozen backbone: once
    feats = feats.reshape(16, 1, *feats.shape[1:])                               # [B, H, L, D]
    mask = batch["attention_mask"].reshape(16, 1, -1)
    opt = torch.optim.AdamW([p for p in rm.parameters() if p.requires_grad], lr=3e-3)
    rm.train()
    for _ in range(60):
        outputs = rm.head(feats, mask, batch["state"], batch["embodiment_id"], batch["actions"])
        loss = torch.stack([torch.nn.functional.mse_loss(o, target) for o in outputs]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    clip = observation(horizon=1, seed=5)                                     # an unseen observation
    forward, backward = np.tile([[3.0, 1.0]], (K, 1)), np.tile([[-3.0, 1.0]], (K, 1))
    scores = rm.score(clip | {"actions": np.stack([forward, backward])})
    assert scores[0] > scores[1] + 0.5, scores


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_with_actions_equals_eager(observation):
    from gr00t_rlhf_train.model.policy import Gr00tPolicy

    rm = _rm(Gr00tPolicy.from_config("tiny", seed=0).to(device="cuda"), "dit")
    clip = observation(horizon=2)
    calls = [clip | {"actions": _actions(seed=s)} for s in (0, 1)] + [clip | {"actions": _actions(8, seed=s)}
                                                                       for s in (2, 3)]
    eager = [rm.score(c) for c in calls]
    rm.use_cuda_graphs()
    for call, want in zip(calls, eager):
        np.testing.assert_allclose(rm.score(call), want, rtol=0, atol=1e-4)   # new actions replay the same graph
    assert rm._graphed.num_graphs == 2                                          # one per candidate count
