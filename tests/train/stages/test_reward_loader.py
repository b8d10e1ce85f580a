"""Stage 2's host preparation runs in the DataLoader workers (``RewardCollator``): ``RewardModel.prepare`` is its
host half (``RewardInputs``, picklable) plus ``to_device``; 0 and 2 workers train to the same numbers. CPU, tiny."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import RewardClips, collate, model_inputs
from gr00t_rlhf_train.model.configuration import ConfigError
from gr00t_rlhf_train.model.reward_model import FRAMES, UNPADDED, RewardInputs
from gr00t_rlhf_train.stages import reward as stage
from gr00t_rlhf_train.stages.reward import RewardCollator, RewardConfig, train_reward

from test_reward_stage_actions import write_action_dataset

K = 2
HEAD = dict(head="dit", head_layers=2, head_heads=2, head_dim=16, head_hidden=32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FrameCache:
    root = tmp_path_factory.mktemp("loader_data")
    write_action_dataset(root / "ds", episodes=6, frames=12)
    return FrameCache(build_cache(root / "ds", root / "cache", image_size=(32, 32), progress=False))


def _model(cache: FrameCache, tmp_path: Path, **kw):
    cfg = RewardConfig(data=str(cache.path), out_dir=str(tmp_path / "run"), horizon=2, action_horizon=K,
                       tuning="frozen", **HEAD, **kw)
    model = stage.build_model(cfg, cache, stage.train_stats(cache, [0, 1, 2, 3]), cfg.head_config())
    clips = RewardClips(cache, [0, 1, 2, 3], horizon=2, action_horizon=K)
    return cfg, model, collate([clips[i] for i in (0, 5, 13, 30, 41, 47)])


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and a[k].device == b[k].device and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("augment", [False, True])
def test_prepare_is_the_host_half_then_the_transfer(cache, tmp_path, augment):
    _, model, batch = _model(cache, tmp_path)
    inputs = model_inputs(batch)
    g1, g2 = (torch.Generator().manual_seed(3) if augment else None for _ in range(2))
    host = model.host_inputs()(inputs, generator=g2)
    assert all(v.device.type == "cpu" for v in host.values() if isinstance(v, torch.Tensor))
    assert isinstance(host[UNPADDED], bool) and FRAMES not in host
    _same(model.prepare(inputs, generator=g1), model.to_device(host))
    one = {k: v[0] for k, v in inputs.items()} | {"actions": np.ones((3, K, 2))}     # 3 candidates, one clip
    _same(model.prepare(one), model.to_device(model.host_inputs()(one)))
    model.use_fast_path(True)                                     # gpu_preprocess: uint8 frames, no pixel_values
    fast = model.prepare(inputs)
    assert FRAMES in fast and "pixel_values" not in fast and isinstance(fast[UNPADDED], bool)


def test_the_host_half_pickles_without_parameters(cache, tmp_path):
    _, model, batch = _model(cache, tmp_path)
    inputs = model.host_inputs()
    blob = pickle.dumps(inputs)
    assert len(blob) < 0.5 * sum(p.numel() * p.element_size() for p in model.parameters())
    again = pickle.loads(blob)
    x = model_inputs(batch)
    _same(inputs(x, torch.Generator().manual_seed(1)), again(x, torch.Generator().manual_seed(1)))
    with pytest.raises(ConfigError, match="RewardInputs.action_dim = 1: must be an integer >= the modality") as e:
        RewardInputs(model.processor, model.head_config, 1)
    assert "\n" not in str(e.value)


def test_the_collator_prepares_with_the_trained_models_processor(cache, tmp_path):
    cfg, model, batch = _model(cache, tmp_path, action_negatives=0.5)
    collator_for, _ = stage.make_steps(cfg, cfg.loss_fn(0.5), None, 0.0)
    collator = collator_for(model)
    assert isinstance(collator, RewardCollator) and collator.inputs.processor is model.processor
    a, b = collator.prepare(batch), pickle.loads(pickle.dumps(collator)).prepare(batch)  # as in a worker process
    _same(a["prepared"], b["prepared"])
    assert torch.equal(a["target"], b["target"]) and (a["target"] == 0.0).any()       # negatives drawn
    assert torch.equal(a["generator"].get_state(), b["generator"].get_state())         # same draws left for the loss


def test_the_worker_side_processor_is_the_init_checkpoints_replacement(cache, tmp_path):
    """``--init``: the checkpoint's processor (its own statistics) is replaced by one with this run's training
    statistics; the collator the workers get carries the replacement."""
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.stages.sft import modality_for

    stats = stage.train_stats(cache, [0, 1, 2, 3])
    other = json.loads(json.dumps(stats))
    for entry in other["state"].values():
        entry["min"], entry["max"] = [v - 10 for v in entry["min"]], [v + 10 for v in entry["max"]]
    Gr00tPolicy.from_config("tiny", modality=modality_for([cache]), stats=other, seed=0).save_pretrained(
        tmp_path / "policy")
    cfg = RewardConfig(data=str(cache.path), out_dir=str(tmp_path / "run"), horizon=2, init=str(tmp_path / "policy"),
                       tuning="frozen", **HEAD)
    model = stage.build_model(cfg, cache, stats, cfg.head_config())
    collator = stage.make_steps(cfg, cfg.loss_fn(0.5), None, 0.0)[0](model)
    assert collator.inputs.processor is model.processor
    assert collator.inputs.processor.stats["state"] == model.processor.stats["state"] != other["state"]


def _run(cache: FrameCache, out: Path, workers: int):
    cfg = RewardConfig(data=str(cache.path), out_dir=str(out), holdout="5", val_fraction=0.25, horizon=2,
                       action_horizon=K, action_negatives=0.3, loss="bce+0.5*bt", pairs_per_batch=8,
                       tuning="frozen", val_max_samples=16, **HEAD,
                       train=dict(steps=4, batch_size=8, lr=1e-3, warmup_steps=1, log_every=1, eval_every=0,
                                  save_every=0, num_workers=workers, prefetch_factor=2))
    result = train_reward(cfg)
    logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in logs if "train/loss" in r], result.train.eval_metrics


def test_zero_and_two_workers_train_to_identical_losses(cache, tmp_path):
    """Negatives, random crops and Bradley-Terry pairs all drawn per batch: the worker count changes no number
    (0 workers: the loop's background thread prepares; 2: the worker processes do)."""
    losses0, eval0 = _run(cache, tmp_path / "w0", 0)
    losses2, eval2 = _run(cache, tmp_path / "w2", 2)
    assert len(losses0) == 4 and losses0 == losses2
    assert eval0.keys() == eval2.keys() and all(
        eval0[k] == eval2[k] or (np.isnan(eval0[k]) and np.isnan(eval2[k])) for k in eval0)
