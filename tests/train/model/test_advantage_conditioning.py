"""Stage 3's model side: per-sample weighted flow matching and the advantage-conditioned action head (CFG)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.model.action_head import masked_mse
from gr00t_rlhf_train.model.checkpoint import read_meta
from gr00t_rlhf_train.model.configuration import ActionHeadConfig, ConfigError, preset
from gr00t_rlhf_train.model.policy import Gr00tPolicy

KEY = "action.wheel_commands"


def make_observation(batch: int | None = None, seed: int = 0, actions: bool = False) -> dict:
    """Random frames, the 3-value state and instruction(s); with ``actions`` a recorded chunk [(B,) 16, 2]."""
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    obs = {"video.ego_view": rng.integers(0, 255, (*lead, 48, 64, 3), dtype=np.uint8),
           "state.left_wheel": rng.uniform(-5, 5, (*lead, 1)), "state.right_wheel": rng.uniform(-5, 5, (*lead, 1)),
           "state.acceleration": rng.uniform(-1, 1, (*lead, 1)),
           "task": "Find Blue cube" if batch is None else ["Find Blue cube"] * batch}
    if actions:
        obs[KEY] = rng.uniform(-5, 5, (*lead, 16, 2))
    return obs


def fresh(seed: int = 0) -> Gr00tPolicy:
    return Gr00tPolicy.from_config("tiny", seed=seed)


def conditioned(seed: int = 0, **defaults) -> Gr00tPolicy:
    """A conditioned tiny policy whose condition embedding is random (so the conditions differ)."""
    p = fresh(seed).enable_advantage_conditioning(**defaults)
    with torch.no_grad():
        emb = p.model.action_head.model.timestep_encoder.condition_embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(seed + 1)))
    return p


def train_batch(policy, batch: int = 4) -> dict:
    return policy.prepare(make_observation(batch, seed=1, actions=True))


def test_equal_weights_give_the_plain_flow_matching_loss():
    p = fresh()
    batch = train_batch(p)
    torch.manual_seed(5)
    plain = p.model.loss(batch)
    torch.manual_seed(5)
    ones = p.model.loss(batch, weights=torch.ones(4))
    torch.manual_seed(5)
    threes = p.model.loss(batch, weights=torch.full((4,), 3.0))
    assert torch.equal(plain, ones)                              # bit-identical, not just close
    torch.testing.assert_close(threes, 3 * plain)


def test_weights_select_samples():
    pred, target = torch.randn(3, 16, 32), torch.randn(3, 16, 32)
    mask = torch.zeros(3, 16, 32)
    mask[:, :, :2] = 1
    only_first = masked_mse(pred, target, mask, torch.tensor([3.0, 0.0, 0.0]))
    per_sample = ((pred - target) ** 2 * mask).sum((1, 2)) / mask.sum()
    torch.testing.assert_close(only_first, 3 * per_sample[0])


def test_presets_and_old_configs_have_no_conditioning():
    for name in ("tiny", "small", "gr00t-n1-2b"):
        assert preset(name).action_head.advantage_conditioning is False
    p = fresh()
    assert not p.advantage_conditioned
    assert not any("condition_embedding" in k for k in p.model.state_dict())
    with pytest.raises(ConfigError, match="default_condition = 'great'"):
        ActionHeadConfig(default_condition="great")
    with pytest.raises(ConfigError, match="default_guidance = -1"):
        ActionHeadConfig(default_guidance=-1)


def test_enabling_keeps_the_policy_until_trained():
    obs = make_observation(seed=2)
    before = fresh().get_action(obs, seed=3)[KEY]
    p = fresh().enable_advantage_conditioning()
    assert p.advantage_conditioned and p.config.action_head.advantage_conditioning
    assert p.processor.model_config.action_head.advantage_conditioning
    new = [k for k in p.model.state_dict() if "condition_embedding" in k]
    assert new == ["action_head.model.timestep_encoder.condition_embedding.weight"]
    for condition, guidance in ((None, None), ("good", 1.0), ("unconditioned", None)):
        np.testing.assert_array_equal(p.get_action(obs, seed=3, condition=condition, guidance=guidance)[KEY], before)
    # guided: a doubled batch (other kernels), equal up to float rounding
    np.testing.assert_allclose(p.get_action(obs, seed=3, condition="bad", guidance=3.0)[KEY], before, atol=1e-5)


def manual_sample(p: Gr00tPolicy, obs: dict, seed: int, velocity) -> np.ndarray:
    """Euler integration with an explicit velocity(head, feats, mask, state, x, t, emb) (reference for CFG)."""
    batch = p.prepare(obs)
    head = p.model.action_head
    with torch.no_grad():
        feats, mask = p.model.features(batch)
        x = head.initial_noise(1, feats.device, feats.dtype, torch.Generator().manual_seed(seed))
        steps = head.config.num_inference_steps
        for k in range(steps):
            t = torch.full((1,), int(k / steps * head.config.num_timestep_buckets), dtype=torch.long)
            x = x + velocity(head, feats, mask, batch["state"], x, t, batch["embodiment_id"]) / steps
    return p.processor.decode_actions(x)[KEY][0]


def test_conditions_guidance_and_determinism():
    p = conditioned()
    p.model.eval()
    obs = make_observation(seed=4)
    good = p.get_action(obs, seed=0, condition="good")[KEY]
    bad = p.get_action(obs, seed=0, condition="bad")[KEY]
    uncond = p.get_action(obs, seed=0, condition="unconditioned")[KEY]
    assert good.shape == (16, 2) and not np.allclose(good, bad) and not np.allclose(good, uncond)
    np.testing.assert_array_equal(good, p.get_action(obs, seed=0, condition="good")[KEY])    # same seed, same chunk
    assert not np.allclose(good, p.get_action(obs, seed=1, condition="good")[KEY])
    # guidance 1 is the plain conditional velocity; 0 the unconditional one; "unconditioned" ignores w
    np.testing.assert_array_equal(p.get_action(obs, seed=0, condition="good", guidance=1.0)[KEY], good)
    np.testing.assert_array_equal(p.get_action(obs, seed=0, condition="good", guidance=0.0)[KEY], uncond)
    np.testing.assert_array_equal(p.get_action(obs, seed=0, condition="unconditioned", guidance=4.0)[KEY], uncond)

    def cond(idx):
        return torch.full((1,), idx, dtype=torch.long)

    def v_ref(head, f, m, s, x, t, e):
        v_c = head.velocity(f, m, s, x, t, e, cond(1))
        v_u = head.velocity(f, m, s, x, t, e, cond(0))
        return v_u + 2.5 * (v_c - v_u)

    guided = p.get_action(obs, seed=0, condition="good", guidance=2.5)[KEY]
    np.testing.assert_allclose(guided, manual_sample(p, obs, 0, v_ref), atol=1e-5)
    np.testing.assert_allclose(good, manual_sample(p, obs, 0, lambda h, f, m, s, x, t, e: h.velocity(
        f, m, s, x, t, e, cond(1))), atol=1e-5)
    # a batch: shapes, and each row equals its own single-observation sample under guidance
    many = make_observation(3, seed=6)
    out = p.get_action(many, seed=0, condition="good", guidance=2.0)[KEY]
    assert out.shape == (3, 16, 2) and np.isfinite(out).all()


def test_defaults_travel_with_the_checkpoint(tmp_path):
    p = conditioned(default_condition="bad", default_guidance=2.0)
    obs = make_observation(seed=7)
    p.save_pretrained(tmp_path / "ckpt")
    head = read_meta(tmp_path / "ckpt")["model"]["action_head"]
    assert head["advantage_conditioning"] and head["default_condition"] == "bad" and head["default_guidance"] == 2.0
    q = Gr00tPolicy.from_pretrained(tmp_path / "ckpt")
    assert q.advantage_conditioned
    default = q.get_action(obs, seed=0)[KEY]
    np.testing.assert_array_equal(default, q.get_action(obs, seed=0, condition="bad", guidance=2.0)[KEY])
    np.testing.assert_array_equal(default, p.get_action(obs, seed=0)[KEY])
    assert not np.allclose(default, q.get_action(obs, seed=0, condition="good")[KEY])    # overridable


def test_bad_condition_arguments_are_one_line_errors():
    plain, cond = fresh(), conditioned()
    obs = make_observation(seed=8)
    with pytest.raises(ValueError, match="no advantage conditioning") as e:
        plain.get_action(obs, condition="good")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no advantage conditioning"):
        plain.get_action(obs, guidance=2.0)
    plain.get_action(obs, guidance=1.0)                          # w = 1 is plain sampling: allowed
    with pytest.raises(ValueError, match="condition = 'great'"):
        cond.get_action(obs, condition="great")
    with pytest.raises(ValueError, match="guidance = -1"):
        cond.get_action(obs, guidance=-1.0)
    with pytest.raises(ConfigError, match="default_condition"):
        fresh().enable_advantage_conditioning(default_condition="great")
    with pytest.raises(ValueError, match="no advantage conditioning"):
        plain.model.loss(train_batch(plain), condition=torch.zeros(4, dtype=torch.long))


def test_conditioned_training_step_moves_the_embedding():
    p = conditioned()
    batch = train_batch(p)
    emb = p.model.action_head.model.timestep_encoder.condition_embedding.weight
    loss = p.model.loss(batch, weights=torch.tensor([1.0, 2.0, 0.5, 1.0]), condition=torch.tensor([1, 2, 0, 1]))
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum(1).gt(0).all()     # every condition row gets a gradient


def test_guided_sampling_reuses_the_dit_kv_cache_with_identical_actions():
    """Classifier-free guidance builds its doubled context once per chunk, so inside ``inference_context``
    the cross-attention keys/values are projected once (not once per step) and the actions are identical."""
    p = conditioned()
    p.model.eval()
    head, dit = p.model.action_head, p.model.action_head.model
    batch = p.prepare(make_observation(seed=4))
    with torch.no_grad():
        feats = p.model.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    args = (feats, batch["attention_mask"], batch["state"], batch["embodiment_id"])
    noise = head.initial_noise(1, feats.device, feats.dtype, torch.Generator().manual_seed(3))
    plain = head.sample(*args, noise=noise, condition="good", guidance=2.5)
    calls = []
    original = dit.context_keys_values
    dit.context_keys_values = lambda ctx: calls.append(ctx.shape[0]) or original(ctx)
    try:
        with dit.inference_context():
            cached = head.sample(*args, noise=noise, condition="good", guidance=2.5)
    finally:
        del dit.context_keys_values
    torch.testing.assert_close(cached, plain, rtol=0, atol=0)
    assert calls == [2]                          # one projection of the doubled [2B] context for all 4 steps
