"""Stage 2 with cached backbone features (``--cache-features``): the same head step as recomputing them; CPU, tiny."""
from __future__ import annotations

import pytest
import torch

from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import RewardClips, collate
from gr00t_rlhf_train.stages import reward as stage
from gr00t_rlhf_train.stages.feature_cache import CachedClips, FrameFeatures
from gr00t_rlhf_train.stages.reward import RewardConfig, RewardConfigError, train_reward

from test_reward_stage import FAST, SIZE, write_dataset

HEADS = {"dit": dict(head="dit", head_layers=2, head_heads=4, head_dim=16, head_hidden=64),
         "mlp": dict(head="mlp", head_hidden=64)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc_data")
    write_dataset(root / "ds", episodes=6, frames=12)
    return FrameCache(build_cache(root / "ds", root / "cache", image_size=SIZE, progress=False))


def _setup(cache, tmp_path, head: str, action_horizon: int = 0):
    cfg = RewardConfig(data=str(cache.path), out_dir=str(tmp_path / "run"), horizon=3, tuning="frozen",
                       augment=False, loss="bce+0.5*bt", action_horizon=action_horizon,
                       action_negatives=0.3 if action_horizon else 0.0, **HEADS[head], train=FAST | dict(steps=10))
    clips = RewardClips(cache, [0, 1, 2, 3], horizon=3, action_horizon=action_horizon)
    stats = stage.train_stats(cache, [0, 1, 2, 3])
    loss = cfg.loss_fn(0.5, True)
    model = stage.build_model(cfg, cache, stats, cfg.head_config("logit", (0.0, 1.0)))
    store = FrameFeatures.build(model, [clips], batch_size=8, progress=False)
    return cfg, clips, model, loss, store


@pytest.mark.parametrize("head,k", [("dit", 0), ("mlp", 2)])
def test_a_head_step_on_cached_features_equals_recomputing_them(cache, tmp_path, head, k):
    cfg, clips, model, loss, store = _setup(cache, tmp_path, head, k)
    cached = CachedClips(clips, store)
    idx = [0, 5, 11, 12, 30, 47]                       # clip starts (first frame repeated), middles, other episodes
    plain_batch, cached_batch = collate([clips[i] for i in idx]), collate([cached[i] for i in idx])
    assert list(plain_batch["episode"]) == list(cached_batch["episode"])
    assert list(plain_batch["row"]) == list(cached_batch["row"])
    plain_fn = stage.make_loss_fn(cfg, loss, None, 0.0)
    cached_fn = stage.make_loss_fn(cfg, loss, None, 0.0, store)
    grads = []
    for fn, batch in ((plain_fn, plain_batch), (cached_fn, cached_batch)):
        model.zero_grad(set_to_none=True)
        value, logs = fn(model, batch)
        value.backward()
        grads.append((float(value.detach()), {n: p.grad.clone() for n, p in model.head.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = grads
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)
    assert not any(p.grad is not None for p in model.backbone.parameters())


def test_cached_samples_match_clips_in_order_and_labels(cache, tmp_path):
    _, clips, _, _, store = _setup(cache, tmp_path, "mlp")
    cached = CachedClips(clips, store)
    assert len(cached) == len(clips) and len(store) == sum(len(cache.episode(e).grid_rows(cache.fps)) for e in clips.episodes)
    for i in range(0, len(clips), 7):
        a, b = clips[i], cached[i]
        assert (a["episode"], a["row"], a["target"]) == (b["episode"], b["row"], b["target"])


def test_training_with_cached_features_learns_and_checkpoints_load(cache, tmp_path):
    cfg = RewardConfig(data=str(cache.path), out_dir=str(tmp_path / "run"), holdout="5", val_fraction=0.25,
                       horizon=2, tuning="frozen", cache_features=True, **HEADS["mlp"],
                       train=FAST | dict(steps=20, eval_every=10, lr=5e-3))
    result = train_reward(cfg)
    assert result.train.best_metric is not None and result.train.best_metric > 0.8, result.train.eval_metrics
    from gr00t_rlhf_train.model.reward_model import RewardModel
    rm = RewardModel.from_pretrained(result.best_checkpoint)
    assert rm.tuning == "frozen"


def test_cache_features_needs_a_frozen_backbone(cache, tmp_path):
    with pytest.raises(RewardConfigError, match="cache_features.*tuning frozen"):
        RewardConfig(data=str(cache.path), out_dir=str(tmp_path / "x"), cache_features=True)
    with pytest.raises(RewardConfigError, match="cache_features"):
        RewardConfig(data=str(cache.path), out_dir=str(tmp_path / "x"), cache_features=True, tuning="lora")
