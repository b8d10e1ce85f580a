"""Advantage-conditioned policies (train rl --method acfm) at run time: the checkpoint's condition and
guidance by default, overrides through open_policy / best-of-N / serve, one-line refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.inference import InferenceError, open_policy
from gr00t_rlhf_train.model.policy import Gr00tPolicy

KEY = "action.wheel_commands"


@pytest.fixture(scope="module")
def acfm_ckpt(tmp_path_factory):
    """A tiny acfm policy (defaults: good, guidance 2) whose condition embedding is random, so conditions differ."""
    p = Gr00tPolicy.from_config("tiny", seed=0).enable_advantage_conditioning("good", 2.0)
    with torch.no_grad():
        emb = p.model.action_head.model.timestep_encoder.condition_embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    return p.save_pretrained(tmp_path_factory.mktemp("acfm") / "ckpt")


@pytest.fixture(scope="module")
def acfm_model(acfm_ckpt):
    return Gr00tPolicy.from_pretrained(acfm_ckpt)


def _plain(o: dict) -> dict:
    return {k: v for k, v in o.items() if k != "stamp"}


def test_defaults_and_overrides_reach_get_action(acfm_ckpt, acfm_model, obs):
    o = obs(0)
    default = open_policy(str(acfm_ckpt), device="cpu")
    assert default.info()["condition"] == "good" and default.info()["guidance"] == 2.0
    expected = acfm_model.get_action(_plain(o), seed=3, condition="good", guidance=2.0)[KEY]
    np.testing.assert_allclose(default.act(o, seed=3).actions, expected, atol=1e-6)
    for condition, guidance in (("bad", None), (None, 0.5), ("unconditioned", 1.0)):
        rt = open_policy(str(acfm_ckpt), device="cpu", condition=condition, guidance=guidance)
        want = acfm_model.get_action(_plain(o), seed=3, condition=condition, guidance=guidance)[KEY]
        got = rt.act(o, seed=3).actions
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert not np.allclose(got, expected, atol=1e-3)
        assert rt.info()["condition"] == (condition or "good")
        assert rt.info()["guidance"] == (2.0 if guidance is None else guidance)


def test_plain_policy_reports_no_condition(local_policy):
    info = local_policy.info()
    assert info["condition"] is None and info["guidance"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(condition="good"), "this policy has no advantage conditioning (train it with `train rl --method acfm`)"),
    (dict(guidance=2.0), "this policy has no advantage conditioning"),
])
def test_plain_policy_given_a_condition_is_refused_at_open(policy_ckpt, kwargs, message):
    with pytest.raises(InferenceError) as e:
        open_policy(str(policy_ckpt), device="cpu", **kwargs)
    assert str(e.value).startswith(f"policy {str(policy_ckpt)}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(condition="great"), "condition = 'great': allowed unconditioned, good, bad"),
    (dict(guidance=-1.0), "guidance = -1.0: must be a finite number >= 0"),
    (dict(guidance=float("nan")), "guidance = nan: must be a finite number >= 0"),
])
def test_bad_condition_or_guidance_is_one_line(acfm_ckpt, kwargs, message):
    with pytest.raises(InferenceError) as e:
        open_policy(str(acfm_ckpt), device="cpu", **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_best_of_n_samples_its_candidates_under_the_condition(acfm_ckpt, reward_ckpt, obs):
    o = obs(2)
    for condition, guidance in ((None, None), ("bad", 3.0)):
        rt = open_policy(str(acfm_ckpt), reward_model=str(reward_ckpt), num_candidates=3, device="cpu",
                         condition=condition, guidance=guidance)
        policy = rt.policy
        candidates = rt.best_of_n.sample(_plain(o), seed=7)                             # [3, 16, 2]
        # brute force: the observation repeated 3 times, the same noise, the same condition and guidance
        batch = policy.prepare({k: (np.stack([v] * 3) if isinstance(v, np.ndarray) else [v] * 3)
                                for k, v in _plain(o).items()})
        noise = policy.model.action_head.initial_noise(3, policy.device, policy.dtype, torch.Generator().manual_seed(7))
        want = policy.model.sample_actions(batch, noise=noise, condition=condition, guidance=guidance)
        np.testing.assert_allclose(candidates, policy.processor.decode_actions(want)[KEY], atol=1e-4)
        chunk = rt.act(o, seed=7)
        np.testing.assert_allclose(chunk.actions, candidates[chunk.chosen], atol=1e-5)
        assert rt.info()["condition"] == (condition or "good")


def test_served_condition_travels_and_a_different_one_is_refused(acfm_ckpt, policy_ckpt, thread_server, obs):
    from gr00t_rlhf_train.inference.runtime import LocalPolicy

    local = LocalPolicy.open(str(acfm_ckpt), device="cpu", condition="bad", guidance=1.5)
    server = thread_server(local)
    remote = open_policy(server.address, condition="bad")                   # the server's own: accepted
    try:
        assert remote.info()["condition"] == "bad" and remote.info()["guidance"] == 1.5
        np.testing.assert_allclose(remote.act(obs(1), seed=2).actions, local.act(obs(1), seed=2).actions, atol=1e-6)
    finally:
        remote.close()
    with pytest.raises(InferenceError, match=r"serves condition 'bad', condition = 'good' was asked: the server "
                                             r"sets it \(serve policy --condition VALUE\)"):
        open_policy(server.address, condition="good")
    plain = thread_server(LocalPolicy.open(str(policy_ckpt), device="cpu"))
    with pytest.raises(InferenceError, match="serves a policy without advantage conditioning, guidance = 2.0"):
        open_policy(plain.address, guidance=2.0)


def test_serve_cli_condition_flags(policy_ckpt, acfm_ckpt, capsys):
    from gr00t_rlhf_train.cli import main

    assert main(["serve", "policy", str(policy_ckpt), "--condition", "good", "--device", "cpu", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: serve policy: policy ") and "no advantage conditioning" in err and "\n" not in err
    assert main(["serve", "policy", str(acfm_ckpt), "--guidance", "-2", "--device", "cpu", "--port", "0"]) == 2
    assert "guidance = -2.0: must be a finite number >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "policy", str(acfm_ckpt), "--condition", "great"])
    assert "invalid choice: 'great'" in capsys.readouterr().err



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("n", [1, 3])
def test_cuda_graphs_equal_eager_per_setting_on_gpu(acfm_ckpt, reward_ckpt, obs, n):
    extra = dict(reward_model=str(reward_ckpt), num_candidates=n) if n > 1 else {}
    for condition, guidance in ((None, None), ("bad", 3.0), ("good", 1.0)):
        fast = open_policy(str(acfm_ckpt), device="cuda", condition=condition, guidance=guidance, **extra)
        slow = open_policy(str(acfm_ckpt), device="cuda", cuda_graphs=False, condition=condition, guidance=guidance,
                           **extra)
        for i in range(4):                                   # warm-up, capture, replays
            a, b = fast.act(obs(i, stamp=0.2 * i), seed=5), slow.act(obs(i, stamp=0.2 * i), seed=5)
            np.testing.assert_allclose(a.actions, b.actions, atol=1e-2)
        graphs = fast.best_of_n._sample if n > 1 else fast.policy._graphed
        assert graphs.num_graphs == 1                        # one graph for this setting
