"""The CUDA-graph fast path: its graph-safe code equals eager (CPU), and the graphs equal eager (GPU only)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.model.cuda_graph import GraphedFunction
from gr00t_rlhf_train.model.policy import GRAPH_KEYS, Gr00tPolicy
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def test_graph_safe_backbone_equals_eager_with_padding(tiny_policy, observation):
    obs = observation(batch=3) | {"task": ["Find Blue cube", "Go to the far red sphere and stop there", "Stop"]}
    batch = tiny_policy.processor(obs)                           # instructions of different lengths
    assert not bool(batch["attention_mask"].all()), "the batch should be padded"
    eager, _ = tiny_policy.model.features(batch)
    safe, _ = tiny_policy.model.features(batch, graph_safe=True)
    # every position, padding too: the official DiT (mask_context=False) cross-attends to padded tokens
    torch.testing.assert_close(safe, eager, rtol=1e-5, atol=1e-5)


def test_noise_argument_reproduces_the_seeded_draw(tiny_policy, observation):
    batch = tiny_policy.processor(observation(batch=2))
    head = tiny_policy.model.action_head
    drawn = tiny_policy.model.sample_actions(batch, generator=torch.Generator().manual_seed(3))
    noise = head.initial_noise(2, torch.device("cpu"), torch.float32, torch.Generator().manual_seed(3))
    given = tiny_policy.model.sample_actions(batch, noise=noise, graph_safe=True)
    torch.testing.assert_close(given, drawn, rtol=1e-5, atol=1e-5)


def test_fast_path_on_cpu_runs_the_eager_code(observation):
    policy = Gr00tPolicy.from_config("tiny", seed=2)
    obs = observation(seed=4)
    eager = policy.get_action(obs, seed=5)["action.wheel_commands"]
    policy.use_cuda_graphs()
    np.testing.assert_allclose(policy.get_action(obs, seed=5)["action.wheel_commands"], eager, rtol=1e-5, atol=1e-5)
    assert policy._graphed.num_graphs == 0                       # nothing is captured on a CPU
    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="dit", horizon=2, num_layers=2, num_heads=2,
                                                          head_dim=16, hidden_size=32))
    clip = observation(horizon=2, seed=6)
    before = rm.score(clip)
    assert rm.use_cuda_graphs().score(clip) == pytest.approx(before, abs=1e-6)


def test_graphed_function_rejects_bad_settings():
    with pytest.raises(ValueError, match="warmup"):
        GraphedFunction(lambda inputs: inputs["x"], warmup=0)
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedFunction(lambda inputs: inputs["x"], max_graphs=0)


@needs_cuda
def test_graphed_function_replays_new_inputs_and_copies_outputs():
    calls = []

    def fn(inputs, scale):
        calls.append(scale)
        return [inputs["x"] * scale + 1, inputs["x"].sum()]

    g = GraphedFunction(fn, warmup=1)
    x = torch.arange(4.0, device="cuda")
    first = g({"x": x}, scale=2.0)
    second = g({"x": x + 10}, scale=2.0)                        # replay: fn is not called again
    assert calls == [2.0, 2.0] and g.num_graphs == 1
    torch.testing.assert_close(first[0], x * 2 + 1)
    torch.testing.assert_close(second[0], (x + 10) * 2 + 1)
    g({"x": x}, scale=3.0)                                      # a new option is a new graph
    assert g.num_graphs == 2


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_graph_policy_equals_eager(observation, dtype):
    policy = Gr00tPolicy.from_config("tiny", seed=0).to(device="cuda", dtype=dtype)
    tol = dict(rtol=0, atol=1e-3) if dtype == torch.float32 else dict(rtol=0, atol=0.1)  # rad/s, range +-5
    long = {"task": ["Find Blue cube", "Go to the far red sphere and stop there", "Stop"]}
    cases = [(observation(seed=s), s) for s in (0, 1)] + [(observation(seed=s, batch=3) | long, s) for s in (0, 1)]
    eager = [policy.get_action(obs, seed=s)["action.wheel_commands"] for obs, s in cases]
    policy.use_cuda_graphs()
    for (obs, s), want in zip(cases, eager):
        np.testing.assert_allclose(policy.get_action(obs, seed=s)["action.wheel_commands"], want, **tol)
    assert policy._graphed.num_graphs == 2                      # batch 1 and batch 3
    batch = policy.prepare(observation(seed=2))
    graphed = policy.sample_actions(batch, num_steps=2, generator=torch.Generator("cuda").manual_seed(0))
    eager = policy.model.sample_actions(batch, num_steps=2, generator=torch.Generator("cuda").manual_seed(0))
    torch.testing.assert_close(graphed, eager, rtol=0, atol=2e-3 if dtype == torch.float32 else 0.1)
    assert set(GRAPH_KEYS) <= set(batch)


@needs_cuda
def test_cuda_graph_follows_weight_updates_and_moves(observation):
    policy = Gr00tPolicy.from_config("tiny", seed=0).to(device="cuda").use_cuda_graphs()
    obs = observation(seed=0)
    policy.get_action(obs, seed=0)
    with torch.no_grad():                                       # in place: the captured graph sees it
        policy.model.action_head.action_decoder.layer2.b.add_(0.5)
    graphed = policy.get_action(obs, seed=0)["action.wheel_commands"]
    policy.use_cuda_graphs(False)
    np.testing.assert_allclose(graphed, policy.get_action(obs, seed=0)["action.wheel_commands"], rtol=0, atol=1e-3)
    policy.use_cuda_graphs()
    policy.get_action(obs, seed=0)
    policy.model.to(dtype=torch.float64)                        # moved behind the policy's back: the guard
    graphed = policy.get_action(obs, seed=0)["action.wheel_commands"]   # re-captures instead of reading freed memory
    policy.use_cuda_graphs(False)
    np.testing.assert_allclose(graphed, policy.get_action(obs, seed=0)["action.wheel_commands"], rtol=0, atol=1e-6)


@needs_cuda
def test_cuda_graph_reward_model_equals_eager(observation):
    policy = Gr00tPolicy.from_config("tiny", seed=0).to(device="cuda")
    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="dit", horizon=2, num_layers=2, num_heads=2,
                                                          head_dim=16, hidden_size=32))
    long = {"task": ["Find Blue cube", "Go to the far red sphere and stop there", "Stop"]}
    clips = [observation(horizon=2, seed=s) for s in (0, 1)] + [observation(batch=3, horizon=2, seed=2) | long]
    eager = [rm.score(c) for c in clips]
    rm.use_cuda_graphs()
    for clip, want in zip(clips, eager):
        np.testing.assert_allclose(rm.score(clip), want, rtol=0, atol=1e-4)
    assert rm._graphed.num_graphs == 2


# -- the speed levers (FastPath): each equals the plain path ----------------------------------------
from gr00t_rlhf_train.model.dit import DiT                          # noqa: E402
from gr00t_rlhf_train.model.policy import FastPath                  # noqa: E402

LEVERS = ("cuda_graphs", "gpu_preprocess", "kv_cache", "unmasked_sdpa")
PADDED = {"task": ["Find Blue cube", "Go to the far red sphere and stop there", "Stop"]}


def test_each_lever_equals_the_plain_path(tiny_policy, observation):
    policy = tiny_policy
    cases = [(observation(seed=1), 3), (observation(batch=3, seed=2) | PADDED, 4)]
    plain = [policy.get_action(obs, seed=s)["action.wheel_commands"] for obs, s in cases]
    off = FastPath(False, False, False, False, False)
    try:
        for lever in (*LEVERS, "all"):
            policy.use_fast_path(True if lever == "all" else FastPath(**(off.__dict__ | {lever: True})))
            for (obs, s), want in zip(cases, plain):
                got = policy.get_action(obs, seed=s)["action.wheel_commands"]
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=lever)
    finally:
        policy.use_fast_path(False)
    np.testing.assert_array_equal(policy.get_action(cases[0][0], seed=3)["action.wheel_commands"], plain[0])


def test_kv_cache_gives_identical_velocities_and_projects_once():
    torch.manual_seed(0)
    dit = DiT(num_layers=4, heads=2, head_dim=8, output_dim=16, cross_attention_dim=24).eval()
    context, mask = torch.randn(2, 7, 24), torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    xs = [torch.randn(2, 5, 16) for _ in range(3)]
    plain = [dit(x, context, torch.tensor([k * 250] * 2), mask) for k, x in enumerate(xs)]
    projections = []
    hook = dit.transformer_blocks[0].attn1.to_k.register_forward_hook(lambda *a: projections.append(1))
    with dit.inference_context():
        cached = [dit(x, context, torch.tensor([k * 250] * 2), mask) for k, x in enumerate(xs)]
        other = dit(xs[0], context.clone(), torch.tensor([0, 0]), mask)       # a new context is projected anew
    hook.remove()
    assert len(projections) == 2 and dit._cache is None
    for got, want in zip(cached, plain):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(other, plain[0], rtol=0, atol=0)


def test_dit_padding_mask_is_optional_as_in_the_official_dit():
    torch.manual_seed(0)
    masked = DiT(num_layers=2, heads=2, head_dim=8, output_dim=16, cross_attention_dim=24).eval()
    official = DiT(num_layers=2, heads=2, head_dim=8, output_dim=16, cross_attention_dim=24, mask_context=False).eval()
    official.load_state_dict(masked.state_dict())
    x, context, t = torch.randn(2, 5, 16), torch.randn(2, 7, 24), torch.tensor([0, 500])
    full, padded = torch.ones(2, 7, dtype=torch.long), torch.ones(2, 7, dtype=torch.long)
    padded[1, 4:] = 0
    torch.testing.assert_close(official(x, context, t, padded), masked(x, context, t, full))   # mask not read
    torch.testing.assert_close(official(x, context, t, full), masked(x, context, t, full))     # no padding: same
    assert not torch.allclose(masked(x, context, t, padded)[1], masked(x, context, t, full)[1])
    with pytest.raises(ValueError, match="mask_context"):
        DiT(num_layers=2, heads=2, head_dim=8, output_dim=16, cross_attention_dim=24, mask_context=1)


def test_prepare_fast_equals_the_processor(observation):
    policy = Gr00tPolicy.from_config("tiny", seed=0)
    for obs in (observation(seed=1), observation(batch=3, seed=2) | PADDED):
        plain = policy.prepare(obs)
        fast, unpadded = policy.prepare_fast(obs)
        for key in ("input_ids", "attention_mask", "state", "embodiment_id"):
            torch.testing.assert_close(fast[key], plain[key], rtol=0, atol=0)
        assert unpadded == bool(plain["attention_mask"].all())
        pixels = policy._device_preprocessor().pixels(fast["frames"])
        torch.testing.assert_close(pixels, plain["pixel_values"], rtol=0, atol=0)
    with pytest.raises(KeyError, match="video.ego_view"):
        policy.prepare_fast({"task": "Stop", "observation.state": np.zeros(3)})
    with pytest.raises(ValueError, match="expected uint8 RGB frames"):
        policy.prepare_fast(observation() | {"video.ego_view": np.zeros((8, 8, 3), np.float32)})


def test_fast_path_settings_are_validated():
    with pytest.raises(ValueError, match="FastPath.kv_cache = 'yes'"):
        FastPath(kv_cache="yes")
    with pytest.raises(ValueError, match=r"fast path levers \['kv'\]: allowed"):
        FastPath.resolve(True, kv=True)
    policy = Gr00tPolicy.from_config("tiny", seed=0)
    assert policy.use_fast_path(compile=False).fast == FastPath()
    assert policy.use_cuda_graphs().fast == FastPath(True, False, False, False, False)
    assert not policy.use_fast_path(False).fast.any and policy._graphed is None
    layers = policy.compilable_layers()                          # compile is lazy: nothing compiles until a call
    assert layers and all(layer._compiled_call_impl is None for layer in layers)
    policy.use_fast_path(compile=True)
    assert all(layer._compiled_call_impl is not None for layer in layers)
    policy.use_fast_path(False)
    assert all(layer._compiled_call_impl is None for layer in layers)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fast_path_equals_eager(observation, dtype):
    policy = Gr00tPolicy.from_config("tiny", seed=0).to(device="cuda", dtype=dtype)
    tol = dict(rtol=0, atol=1e-3) if dtype == torch.float32 else dict(rtol=0, atol=0.1)  # rad/s, range +-5
    cases = [(observation(seed=s), s) for s in (0, 1)] + [(observation(seed=s, batch=3) | PADDED, s) for s in (0, 1)]
    eager = [policy.get_action(obs, seed=s)["action.wheel_commands"] for obs, s in cases]
    policy.use_fast_path()
    for (obs, s), want in zip(cases, eager):
        np.testing.assert_allclose(policy.get_action(obs, seed=s)["action.wheel_commands"], want, **tol)
    assert policy._graphed.num_graphs == 2                      # batch 1 (unpadded) and batch 3 (padded)


@pytest.mark.parametrize("kind", ["dit", "mlp"])
def test_reward_model_levers_equal_the_plain_path(tiny_policy, observation, kind):
    extra = dict(num_layers=2, num_heads=2, head_dim=16, hidden_size=32, refine_steps=3) if kind == "dit" else {}
    rm = RewardModel.from_policy(tiny_policy, RewardHeadConfig(kind=kind, horizon=2, **extra))
    clips = [observation(horizon=2, seed=1), observation(batch=3, horizon=2, seed=2) | PADDED,
             observation(batch=4, horizon=2, seed=3)]
    plain = [rm.score(c) for c in clips]
    for lever in (*LEVERS, "all"):
        rm.use_fast_path(True if lever == "all" else FastPath.resolve(False, **{lever: True}))
        for clip, want in zip(clips, plain):
            np.testing.assert_allclose(rm.score(clip), want, rtol=0, atol=1e-6, err_msg=lever)
    fast = rm.prepare(clips[2])
    assert "pixel_values" not in fast and fast["frames"].dtype == torch.uint8 and fast["unpadded"] is True
    assert rm.use_fast_path(False).prepare(clips[2]).keys() >= {"pixel_values"}


@pytest.mark.parametrize("kind", ["dit", "mlp"])
@needs_cuda
def test_cuda_reward_fast_path_equals_eager(observation, kind):
    policy = Gr00tPolicy.from_config("tiny", seed=0).to(device="cuda")
    extra = dict(num_layers=2, num_heads=2, head_dim=16, hidden_size=32, refine_steps=3) if kind == "dit" else {}
    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind=kind, horizon=2, **extra))
    clips = [observation(horizon=2, seed=s) for s in (0, 1)] + [observation(batch=3, horizon=2, seed=2) | PADDED]
    eager = [rm.score(c) for c in clips]
    rm.use_fast_path()
    for clip, want in zip(clips, eager):
        np.testing.assert_allclose(rm.score(clip), want, rtol=0, atol=1e-3)
    assert rm._graphed.num_graphs == 2
