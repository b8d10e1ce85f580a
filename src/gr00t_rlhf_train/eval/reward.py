"""``evaluate_reward``: score a frame cache's clips with a reward checkpoint; metrics, predictions, plots.

    result = evaluate_reward("runs/reward/best", "cache/WithBadEp", episodes=[*range(40, 50), *range(90, 100)],
                             out_dir="eval/withbadep")
    result["metrics"]["frame.auroc"]

The checkpoint describes itself (horizon, head, normalisation, tokenizer): the clips are RewardClips of
its horizon and, for an action-conditioned model (``action_horizon`` K > 0), carry the K recorded actions
from each labelled row. Outputs in ``out_dir``: ``predictions.npz`` (pred, target, episode, row, feedback, time),
``metrics.json`` (``metrics.reward_metrics`` plus the "time since episode start" baseline fitted on the
labelled episodes that are not evaluated) and ``scatter.png``, ``timeline.png``, ``roc.png``. With
``prediction_only`` (unlabeled data) only ``predictions.npz`` is written.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import plots
from .common import (EvalError, check_episodes, check_modality, model_inputs, open_cache, resolve_device,
                     episode_times, spread_indices, to_numpy, write_json)
from .metrics import positive_cut, reward_metrics, time_baseline_metrics


def reward_checkpoint_meta(checkpoint: str | Path) -> dict:
    """The checkpoint's ``gr00t_rlhf.json``; a missing directory or any kind but a reward model is a one-line error."""
    from gr00t_rlhf_train.model.checkpoint import read_meta

    path = Path(checkpoint)
    if not path.is_dir():
        raise EvalError(f"reward checkpoint {path} does not exist (expected a directory with gr00t_rlhf.json)")
    meta = read_meta(path)
    if meta["kind"] != "reward_model":
        hint = " (evaluate it with `gr00t-rlhf eval policy`)" if meta["kind"] == "policy" else ""
        raise EvalError(f"{path}: checkpoint kind is {meta['kind']!r}, `eval reward` needs a 'reward_model'{hint}")
    return meta


# clips per forward pass when the caller does not say: large batches keep a GPU busy (docs/performance.md)
DEFAULT_BATCH_SIZE = {"cuda": 256, "cpu": 64}


def load_reward_model(checkpoint: str | Path, device: str = "auto", fast: bool = True):
    """A reward checkpoint -> (RewardModel on the device (bf16 on CUDA), its meta).

    On CUDA with ``fast`` the model's inference fast path is on (``RewardModel.use_fast_path()``: GPU image
    preprocessing, CUDA graphs, K/V cache, unmasked SDPA; docs/performance.md); ``fast=False`` or a CPU
    keeps the plain eager path."""
    from gr00t_rlhf_train.model.reward_model import RewardModel

    path = Path(checkpoint)
    meta = reward_checkpoint_meta(path)
    dev, dtype = resolve_device(device)
    rm = RewardModel.from_pretrained(path, device=dev, dtype=dtype)
    rm.eval()
    if fast and dev.type == "cuda":
        rm.use_fast_path()
    return rm, meta


def _predict(rm, batch: dict) -> np.ndarray:
    """Rewards [B] on the target's scale (``RewardModel.predict`` when the model has it)."""
    import torch

    inputs = model_inputs(batch)
    if getattr(getattr(rm, "head_config", None), "action_horizon", 0):
        inputs["actions"] = batch["actions"]                       # the recorded actions: a model input
    with torch.no_grad():
        prepared = rm.prepare(inputs)
        out = rm.predict(prepared) if hasattr(rm, "predict") else rm.infer(prepared)[-1]
    return out.float().cpu().numpy().reshape(-1)


def score_clips(rm, clips, indices: np.ndarray, batch_size: int = 64, progress: bool = False) -> dict[str, np.ndarray]:
    """Score the clips at ``indices`` in batches -> {"pred", "target", "feedback", "episode", "row"} arrays."""
    from torch.utils.data import DataLoader, Subset

    from gr00t_rlhf_train.data.samples import collate

    loader = DataLoader(Subset(clips, indices.tolist()), batch_size=batch_size, shuffle=False, collate_fn=collate)
    if progress:
        from tqdm import tqdm
        loader = tqdm(loader, desc="scoring", unit="batch")
    cols: dict[str, list] = {k: [] for k in ("pred", "target", "feedback", "episode", "row")}
    for batch in loader:
        cols["pred"].append(_predict(rm, batch))
        n = len(cols["pred"][-1])
        for key, missing in (("target", np.nan), ("feedback", -1)):        # None when the data has no labels
            v = batch.get(key)
            v = [missing] * n if v is None else [missing if x is None else x for x in to_numpy(v).reshape(-1).tolist()]
            cols[key].append(np.asarray(v, dtype=np.float64))
        cols["episode"].append(to_numpy(batch["episode"]).reshape(-1).astype(np.int64))
        cols["row"].append(to_numpy(batch["row"]).reshape(-1).astype(np.int64))
    out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    fb = out["feedback"]
    out["feedback"] = np.where(np.isfinite(fb), fb, -1).astype(np.int64)
    return out


def baseline_data(episodes, target: str = "reward", vocabulary=None) -> tuple[np.ndarray, np.ndarray] | None:
    """(time since episode start, target) of every row of the labelled ``episodes`` (cache or reader episodes:
    ``times``, ``reward``, ``feedback`` / ``feedback_keys``); None when none is labelled."""
    times, targets = [], []
    for e in episodes:
        if target == "reward":
            y = e.reward
        else:
            keys = getattr(e, "feedback", None) if hasattr(e, "feedback") else getattr(e, "feedback_keys", None)
            y = None if keys is None or vocabulary is None else np.array([vocabulary.reward(int(k)) for k in keys])
        if y is None:
            continue
        t = np.asarray(e.times, np.float64)
        times.append(t - t[0])
        targets.append(np.asarray(y, np.float64))
    if not times:
        return None
    return np.concatenate(times), np.concatenate(targets)


def training_settings(meta: dict) -> dict:
    """What ``train reward`` recorded in the checkpoint (``extra.reward_training``: target, threshold...) or {}."""
    return dict(((meta.get("extra") or {}).get("reward_training")) or {})


def _target(cache, episodes: list[int], wanted: str, prediction_only: bool) -> str | None:
    """Which label RewardClips reads: ``wanted`` (the checkpoint's training target: next.reward or the feedback
    keys' rewards); with ``prediction_only`` and no such label, another one (saved, not scored) or none."""
    first = cache.episode(episodes[0])
    have = {"reward": first.reward is not None,
            "feedback": first.feedback is not None and cache.vocabulary is not None}
    if have.get(wanted):
        return wanted
    if not prediction_only:
        what = "reward labels (next.reward)" if wanted == "reward" else "feedback labels with a vocabulary"
        raise EvalError(f"{cache.path}: the cache has no {what}, the target this model was trained on; "
                        "use --prediction-only for unlabeled data")
    return next((k for k, ok in have.items() if ok), None)


def evaluate_reward(checkpoint: str | Path, cache, episodes=None, max_samples: int | None = None,
                    prediction_only: bool = False, batch_size: int | None = None, device: str = "auto",
                    out_dir: str | Path = "eval_reward", threshold: float | None = None, train_episodes=None,
                    baseline: tuple | None = None, progress: bool = False) -> dict:
    """Evaluate a reward checkpoint on the ``episodes`` of a frame cache (all when None).

    The targets are those the model was trained on (``next.reward`` or the feedback keys' rewards, as
    recorded by ``train reward``; ``next.reward`` otherwise); ``threshold`` (binary targets: positive above
    it) defaults to the checkpoint's, else 0.5. The time baseline is fitted on ``baseline`` = (times,
    targets) when given, else on the labelled cache episodes ``train_episodes`` (default: every cache
    episode not evaluated). ``batch_size`` None: ``DEFAULT_BATCH_SIZE`` of the device (256 clips on CUDA,
    64 on the CPU).
    -> {"metrics": {...} (empty with prediction_only), "files": {name: path}, "samples": N, "seconds": s}.
    """
    from gr00t_rlhf_train.data.samples import RewardClips

    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0):
        raise EvalError(f"batch_size = {batch_size}: must be a positive integer")
    start = time.monotonic()
    cache = open_cache(cache)
    chosen = check_episodes(cache, episodes)
    rm, meta = load_reward_model(checkpoint, device)
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE["cuda" if next(rm.parameters()).device.type == "cuda" else "cpu"]
    horizon = rm.head_config.horizon
    settings = training_settings(meta)
    wanted = settings.get("target", "reward")
    if threshold is None:
        binary = settings.get("target_kind") == "binary" and "threshold" in settings
        threshold = float(settings["threshold"]) if binary else 0.5
    target = _target(cache, chosen, wanted, prediction_only)
    action_horizon = rm.head_config.action_horizon
    if action_horizon and not cache.modality.get("action"):
        raise EvalError(f"{checkpoint}: the model reads {action_horizon} actions per clip but the cache "
                        f"{getattr(cache, 'path', cache)} has no action columns")
    clips = RewardClips(cache, episodes=chosen, horizon=horizon, target=target, action_horizon=action_horizon,
                        action_keys=list(rm.processor.modality.action) if action_horizon else None)
    if len(clips) == 0:
        raise EvalError(f"episodes {chosen}: no clips to score in {getattr(cache, 'path', cache)}")
    check_modality(clips[0], rm.processor.modality, checkpoint, getattr(cache, "path", cache))
    if action_horizon:
        want, have = rm.processor.modality.action_dim, clips[0]["actions"].shape[-1]
        if have != want:
            raise EvalError(f"{checkpoint}: the model reads {want} action values per step but the cache "
                            f"{getattr(cache, 'path', cache)} has {have}")
    indices = spread_indices(len(clips), max_samples)
    cols = score_clips(rm, clips, indices, batch_size, progress)
    cols["time"] = episode_times(cache, cols["episode"], cols["row"])
    labelled = bool(np.isfinite(cols["target"]).all()) and cols["target"].size > 0
    if not prediction_only and not labelled:
        raise EvalError(f"{getattr(cache, 'path', cache)}: episodes {chosen} have no reward labels (next.reward); "
                        "use --prediction-only for unlabeled data")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"predictions": out / "predictions.npz"}
    np.savez(files["predictions"], **cols)
    result = {"metrics": {}, "files": files, "samples": int(indices.size), "seconds": 0.0}
    if prediction_only:
        result["seconds"] = time.monotonic() - start
        return result

    lengths = {int(ep): cache.rows(int(ep)) for ep in chosen}
    m = reward_metrics(cols["pred"], cols["target"], cols["episode"], cols["row"], threshold, lengths)
    if baseline is None:
        others = [e for e in cache.episodes if int(e) not in set(chosen)]
        fit_on = check_episodes(cache, train_episodes, "train episodes") if train_episodes is not None else others
        baseline = baseline_data([cache.episode(e) for e in fit_on], wanted, cache.vocabulary)
    base_pred = None
    if baseline is None:
        m["baseline_time.note"] = "no labelled episode outside the evaluated ones to fit the time baseline on"
    else:
        m.update(time_baseline_metrics(baseline[0], baseline[1], cols["time"], cols["target"], cols["episode"],
                                       cols["row"], threshold, lengths))
        base_pred = m["baseline_time.intercept"] + m["baseline_time.slope"] * cols["time"]

    vocab = dict(getattr(getattr(cache, "vocabulary", None), "texts", None) or {}) or None
    files["scatter"] = plots.scatter_plot(cols["pred"], cols["target"], out / "scatter.png")
    files["timeline"] = plots.timeline_plot(cols["pred"], cols["target"], cols["episode"], cols["row"],
                                            out / "timeline.png", feedback=cols["feedback"], vocabulary=vocab,
                                            times=cols["time"])
    labels = cols["target"] > positive_cut(cols["target"], threshold)
    if 0 < labels.sum() < labels.size:
        extra = {"time since start": (base_pred, labels)} if base_pred is not None else None
        files["roc"] = plots.roc_plot(cols["pred"], labels, out / "roc.png", m["frame.auroc"], extra)
    result["seconds"] = time.monotonic() - start
    info = {"checkpoint": str(checkpoint), "cache": str(getattr(cache, "path", cache)), "episodes": chosen,
            "horizon": horizon, "action_horizon": action_horizon, "target": wanted, "threshold": threshold, "samples": int(indices.size),
            "max_samples": max_samples,
            "device": str(next(rm.parameters()).device), "seconds": round(result["seconds"], 2),
            "head": (meta.get("head") or {}).get("reward_head")}
    files["metrics"] = write_json(out / "metrics.json", {"info": info, "metrics": m})
    result["metrics"] = m
    return result
