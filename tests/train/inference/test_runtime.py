"""Local runtimes: chunk shape and units, determinism with a seed, the spec, one-line errors."""
from __future__ import annotations

import numpy as np
import torch
import pytest

from gr00t_rlhf_train.inference import Chunk, InferenceError, ObservationSpec, open_policy, open_reward
from gr00t_rlhf_train.inference.runtime import DEFAULT_FRAME_RATE, LANGUAGE_KEY, LocalReward


def test_spec_from_the_checkpoint(local_policy):
    spec = local_policy.spec
    assert spec == ObservationSpec(video_keys=["video.ego_view"], image_size=None,
                                   state_keys=[("state.left_wheel", 1), ("state.right_wheel", 1),
                                               ("state.acceleration", 1)],
                                   language_key=LANGUAGE_KEY, action_horizon=16, action_dim=2)
    assert ObservationSpec.from_dict(spec.to_dict()) == spec


def test_act_shape_units_and_seed(local_policy, obs):
    a = local_policy.act(obs(0), seed=3)
    assert isinstance(a, Chunk) and a.actions.shape == (16, 2) and a.actions.dtype == np.float32
    assert a.scores is None and a.chosen == 0 and a.model_s > 0
    assert np.isfinite(a.actions).all()                    # robot units (official min_max: not clipped to +-5)
    b = local_policy.act(obs(0), seed=3)
    np.testing.assert_array_equal(a.actions, b.actions)
    c = local_policy.act(obs(0), seed=4)
    assert not np.array_equal(a.actions, c.actions)
    # the same chunk as the policy itself (robot units, not normalised), any frame size
    expected = local_policy.policy.get_action({k: v for k, v in obs(0).items()}, seed=3)["action.wheel_commands"]
    np.testing.assert_allclose(a.actions, expected, atol=1e-6)
    assert local_policy.act(obs(1, size=(240, 320)), seed=0).actions.shape == (16, 2)


@pytest.mark.parametrize("change, message", [
    (lambda o: o.pop("video.ego_view"), "observation lacks 'video.ego_view'"),
    (lambda o: o.update({"video.ego_view": o["video.ego_view"].astype(np.float32)}),
     "observation['video.ego_view']: expected uint8 RGB [h, w, 3], got float32 [48, 64, 3]"),
    (lambda o: o.update({"video.ego_view": o["video.ego_view"][..., :1]}), "observation['video.ego_view']"),
    (lambda o: o.update({"state.left_wheel": np.array([np.nan], np.float32)}),
     "observation['state.left_wheel']: non-finite value nan"),
    (lambda o: o.update({"state.right_wheel": np.zeros(2)}), "observation['state.right_wheel']: expected shape [1]"),
    (lambda o: o.pop("state.acceleration"), "observation lacks 'state.acceleration'"),
    (lambda o: o.pop(LANGUAGE_KEY), f"observation lacks {LANGUAGE_KEY!r}"),
    (lambda o: o.update({"stamp": float("inf")}), "observation['stamp']"),
])
def test_bad_observation_is_one_line(local_policy, obs, change, message):
    o = obs(0)
    change(o)
    with pytest.raises(InferenceError) as e:
        local_policy.act(o)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("source, message", [
    ("no/such/dir", "policy 'no/such/dir': neither a checkpoint directory nor a preset"),
    ("tcp://host", "expected tcp://HOST:PORT"),
])
def test_bad_source_is_one_line(source, message):
    with pytest.raises(InferenceError) as e:
        open_policy(source)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_wrong_checkpoint_kind(reward_ckpt, policy_ckpt, tmp_path):
    with pytest.raises(InferenceError, match=r"policy .*expected 'policy'"):
        open_policy(str(reward_ckpt), device="cpu")
    with pytest.raises(InferenceError, match=r"reward model .*not a reward model"):
        open_reward(str(policy_ckpt), device="cpu")
    with pytest.raises(InferenceError, match=r"policy .*holds neither"):
        open_policy(str(tmp_path), device="cpu")
    with pytest.raises(InferenceError, match="device 'tpu'"):
        open_policy("tiny", device="tpu")


def test_reward_runtime(local_reward, clip, tiny_model):
    r = local_reward
    assert (r.horizon, r.action_horizon, r.frame_rate, r.reward_range) == (2, 4, 5.0, (0.0, 1.0))
    assert r.spec.image_size == (96, 96)
    c = clip()
    value = r.score(c)
    assert isinstance(value, float) and np.isfinite(value)
    assert value == pytest.approx(float(r.model.score(c)), abs=1e-6)
    with pytest.raises(InferenceError, match=r"clip\['video.ego_view'\]: expected uint8 RGB \[2, h, w, 3\]"):
        r.score(clip(horizon=3))
    with pytest.raises(InferenceError, match=r"clip lacks 'actions' \[4, 2\]"):
        r.score(clip(k=0))
    bad = clip()
    bad["state.acceleration"][1, 0] = np.inf
    with pytest.raises(InferenceError, match=r"clip\['state.acceleration'\]: non-finite value inf"):
        r.score(bad)


def test_reward_frame_rate_default(tiny_model, tmp_path):
    from gr00t_rlhf_train.model.reward_model import RewardModel
    path = RewardModel.from_policy(tiny_model).save_pretrained(tmp_path / "rm")       # no training metadata
    r = LocalReward.open(str(path), device="cpu")
    assert r.frame_rate == DEFAULT_FRAME_RATE and r.action_horizon == 0 and r.spec.image_size is None


def test_closed_runtime_refuses(policy_ckpt, obs):
    rt = open_policy(str(policy_ckpt), device="cpu")
    rt.close()
    with pytest.raises(InferenceError, match="the runtime is closed"):
        rt.act(obs(0))


def test_state_shapes_accepted_and_refused(local_reward, clip):
    c = clip()
    c["state.left_wheel"] = c["state.left_wheel"].reshape(-1)               # [H] for a 1-value state: fine
    local_reward.score(c)
    c["state.left_wheel"] = np.zeros((1, 2), np.float32)                    # [1, H]: the same H values
    local_reward.score(c)
    c["state.left_wheel"] = np.zeros((4,), np.float32)
    with pytest.raises(InferenceError, match=r"clip\['state.left_wheel'\]: expected shape \[2, 1\], got \[4\]"):
        local_reward.score(c)


def test_fast_path_switch_is_cuda_only_and_cpu_runs_as_before(local_policy, policy_ckpt, reward_ckpt, obs):
    """``fast`` picks the whole fast path (default) or the CUDA graphs alone on CUDA; a CPU stays eager."""
    plain = open_policy(str(policy_ckpt), device="cpu", fast=False)
    assert local_policy.info()["fast_path"] is False and plain.info()["fast_path"] is False
    assert not local_policy.policy.fast.any and not plain.policy.fast.any
    np.testing.assert_array_equal(plain.act(obs(0), seed=3).actions, local_policy.act(obs(0), seed=3).actions)
    reward = open_reward(str(reward_ckpt), device="cpu")
    assert not reward.fast_path and not reward.cuda_graphs and not reward.model.fast.any


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_path_equals_eager_at_the_runtime_on_gpu(policy_ckpt, reward_ckpt, obs, clip):
    """The whole fast path (CUDA graphs, GPU preprocessing, cached keys/values, unmasked SDPA) through the runtime
    API: the same actions and rewards as eager within bf16-level tolerance, over warm-up, capture and replays."""
    fast = open_policy(str(policy_ckpt), device="cuda", fast=True)
    slow = open_policy(str(policy_ckpt), device="cuda", cuda_graphs=False)
    assert fast.info()["fast_path"] is True and slow.info()["fast_path"] is False
    for i in range(4):
        a, b = fast.act(obs(i, stamp=0.2 * i), seed=i), slow.act(obs(i, stamp=0.2 * i), seed=i)
        np.testing.assert_allclose(a.actions, b.actions, atol=5e-2)
    rf, rs = open_reward(str(reward_ckpt), device="cuda", fast=True), open_reward(str(reward_ckpt), device="cuda",
                                                                                  cuda_graphs=False)
    assert rf.fast_path and not rs.fast_path
    for i in range(4):
        np.testing.assert_allclose(rf.score(clip(seed=i)), rs.score(clip(seed=i)), atol=1e-2)
