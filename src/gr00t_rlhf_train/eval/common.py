"""Helpers shared by ``evaluate_reward`` and ``evaluate_policy``: device choice, the cache and the
episodes to read, evenly spread sample subsets, model inputs of a batch, and JSON without NaN."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gr00t_rlhf_train.model.processor import LANGUAGE_KEYS


class EvalError(ValueError):
    """A bad evaluation request (wrong checkpoint kind, unknown episodes, unlabeled data...): one line."""


def resolve_device(device: str = "auto"):
    """"auto" -> cuda when available, else cpu; -> (torch.device, dtype): bfloat16 on CUDA, float32 on the CPU."""
    import torch

    name = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise EvalError(f"--device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EvalError(f"--device {device!r}: CUDA is not available on this machine (use cpu or auto)")
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


def open_cache(cache):
    """A FrameCache, or the path of one (DatasetError naming the file when missing or damaged)."""
    from gr00t_rlhf_train.data.cache import FrameCache

    return cache if isinstance(cache, FrameCache) else FrameCache(cache)


def check_episodes(cache, episodes, what: str = "episodes") -> list[int]:
    """The chosen episodes (all of the cache's when None), each one checked to be in the cache."""
    available = [int(e) for e in cache.episodes]
    if episodes is None:
        return available
    chosen = sorted({int(e) for e in episodes})
    if not chosen:
        raise EvalError(f"{what}: no episode chosen")
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise EvalError(f"{what}: {ranges(missing)} not in the cache (it holds {ranges(available)})")
    return chosen


def ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, ids = [], sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(f"{ids[i]}-{ids[j]}" if j > i else str(ids[i]))
        i = j + 1
    return ",".join(out)


def spread_indices(n: int, max_samples: int | None) -> np.ndarray:
    """All of 0..n-1, or ``max_samples`` of them spread evenly (deterministic, every episode represented)."""
    if max_samples is not None and max_samples <= 0:
        raise EvalError(f"max_samples = {max_samples}: must be a positive integer")
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_samples).round().astype(np.int64))


def model_inputs(batch: dict) -> dict:
    """The observation keys of a collated batch (camera frames, state, instruction): no targets, no feedback,
    no recorded actions, no bookkeeping columns reach the model."""
    return {k: v for k, v in batch.items()
            if k.startswith(("video.", "state.")) or k == "observation.state" or k in LANGUAGE_KEYS}


def check_modality(sample: dict, modality, checkpoint, cache_path, groups=("video", "state")) -> None:
    """Every camera / state (/ action) key the checkpoint reads must be in the cache's samples."""
    for group in groups:
        names = modality.video if group == "video" else list(getattr(modality, group))
        missing = [f"{group}.{n}" for n in names if f"{group}.{n}" not in sample
                   and not (group == "state" and "observation.state" in sample)]
        if missing:
            have = sorted(k for k in sample if k.startswith(group + "."))
            raise EvalError(f"{checkpoint}: the model reads {missing} but the cache {cache_path} provides {have}")


def episode_times(cache, episodes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Seconds since the episode start of each (episode, row) of the cache."""
    t = np.zeros(rows.size)
    for ep in np.unique(episodes):
        times = np.asarray(cache.episode(int(ep)).times, np.float64)
        m = episodes == ep
        t[m] = times[rows[m]] - times[0]
    return t


def to_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def clean_json(value):
    """Non-finite floats -> None, numpy scalars -> Python: strict JSON."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")
    return path
