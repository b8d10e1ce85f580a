"""Best-of-N: one batched call of N candidates, the argmax of the reward model executed, equal to brute force;
the clip history; one-line refusals at open."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.inference import InferenceError, open_policy
from gr00t_rlhf_train.inference.best_of_n import ClipHistory
from gr00t_rlhf_train.inference.runtime import LANGUAGE_KEY, LocalPolicy


@pytest.fixture(scope="module")
def best_of_4(policy_ckpt, reward_ckpt) -> LocalPolicy:
    return open_policy(str(policy_ckpt), reward_model=str(reward_ckpt), num_candidates=4, device="cpu")


def test_picks_the_argmax_and_equals_brute_force(best_of_4, obs):
    rt = best_of_4
    history = rt.best_of_n.new_history()
    rt.act_with_history(obs(1, stamp=10.0), 0, history)                   # an earlier frame (0.2 s = 1/fps back)
    o = obs(2, stamp=10.2)
    chunk = rt.act_with_history(o, 7, history)
    assert chunk.scores.shape == (4,) and chunk.actions.shape == (16, 2)
    assert chunk.chosen == int(np.argmax(chunk.scores)) and chunk.scores.std() > 0

    # brute force: the policy on the observation repeated N times with the same noise ...
    policy = rt.policy
    clean = {k: v for k, v in o.items() if k != "stamp"}
    batch = policy.prepare({k: (np.stack([v] * 4) if isinstance(v, np.ndarray) else [v] * 4) for k, v in clean.items()})
    noise = policy.model.action_head.initial_noise(4, policy.device, policy.dtype, torch.Generator().manual_seed(7))
    expected = policy.processor.decode_actions(policy.model.sample_actions(batch, noise=noise))["action.wheel_commands"]
    # ... each candidate scored on its own clip: frames and states of the two observations + its first K actions
    rm = rt.reward.model
    earlier = obs(1)
    clip = {k: np.stack([earlier[k], o[k]]) for k in ("video.ego_view", "state.left_wheel", "state.right_wheel",
                                                      "state.acceleration")}
    clip[LANGUAGE_KEY] = o[LANGUAGE_KEY]
    scores = np.array([rm.score(clip | {"actions": expected[i, :4]}) for i in range(4)])
    np.testing.assert_allclose(chunk.scores, scores, atol=1e-4)
    np.testing.assert_allclose(chunk.actions, expected[int(np.argmax(scores))], atol=1e-4)


def test_same_seed_same_candidates(best_of_4, obs):
    a = best_of_4.act(obs(3), seed=5)
    b = best_of_4.act(obs(3), seed=5)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_history_spacing_and_padding(obs):
    h = ClipHistory(horizon=3, frame_rate=10.0)
    key = (LANGUAGE_KEY, ["video.ego_view"])
    h.add(obs(0, stamp=1.00), *key)
    assert [f["stamp"] for f in h.clip()] == [1.0, 1.0, 1.0]              # shorter history: the oldest repeats
    for i, t in enumerate([1.03, 1.07, 1.11, 1.16, 1.21]):
        h.add(obs(i + 1, stamp=t), *key)
    # targets 1.01, 1.11, 1.21: the nearest observation to each
    assert [f["stamp"] for f in h.clip()] == [1.0, 1.11, 1.21]
    h.add(obs(7, stamp=1.26), *key)                                       # targets 1.06, 1.16, 1.26
    assert [f["stamp"] for f in h.clip()] == [1.07, 1.16, 1.26]
    h.add(obs(9, stamp=1.22, task="Find Green sphere"), *key)             # a new instruction: a new episode
    assert [f["stamp"] for f in h.clip()] == [1.22] * 3
    h.add(obs(9, stamp=0.5, task="Find Green sphere"), *key)              # time went backwards
    assert [f["stamp"] for f in h.clip()] == [0.5] * 3
    for t in np.arange(1.0, 60.0, 0.05):
        h.add(obs(0, stamp=float(t)), *key)
    assert len(h.entries) <= 8 and h.entries[0][0] >= 59.9 - 0.35        # only what a clip can still use


def test_refusals_at_open(policy_ckpt, tiny_model, tmp_path):
    with pytest.raises(InferenceError, match=r"num_candidates = 4: best-of-N needs a reward model that takes actions"):
        open_policy(str(policy_ckpt), num_candidates=4, device="cpu")
    from gr00t_rlhf_train.model.reward_model import RewardModel
    no_actions = RewardModel.from_policy(tiny_model).save_pretrained(tmp_path / "rm0")
    with pytest.raises(InferenceError) as e:
        open_policy(str(policy_ckpt), reward_model=str(no_actions), num_candidates=2, device="cpu")
    assert str(e.value) == (f"best-of-N needs a reward model that takes actions (train reward --action-horizon K); "
                            f"{no_actions} has none")
    with pytest.raises(InferenceError, match="num_candidates = 0"):
        open_policy(str(policy_ckpt), num_candidates=0, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_equal_eager_on_gpu(policy_ckpt, reward_ckpt, obs):
    fast = open_policy(str(policy_ckpt), reward_model=str(reward_ckpt), num_candidates=4, device="cuda")
    slow = open_policy(str(policy_ckpt), reward_model=str(reward_ckpt), num_candidates=4, device="cuda",
                       cuda_graphs=False)
    h_fast, h_slow = fast.best_of_n.new_history(), slow.best_of_n.new_history()
    for i in range(4):                                   # warm-up, capture, replays
        a = fast.act_with_history(obs(i, stamp=0.2 * i), 5, h_fast)
        b = slow.act_with_history(obs(i, stamp=0.2 * i), 5, h_slow)
        np.testing.assert_allclose(a.actions, b.actions, atol=1e-2)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-2)
