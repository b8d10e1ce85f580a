"""State and action normalisation from dataset statistics (GR00T's min_max, q99, mean_std).

Stats of one modality key are ``{"min", "max", "mean", "std", "q01", "q99"}`` lists (one value
per dimension). ``min_max`` and ``q99`` map the range to [-1, 1] (values outside are clipped);
``mean_std`` standardises. A dimension whose range or std is zero normalises to 0 (min_max, q99)
or is only centred (mean_std). ``unnormalize(normalize(x)) == x`` for values inside the range.
Computation is float64 so the round trip is exact to double precision.
"""
from __future__ import annotations

import numpy as np

MODES = ("min_max", "q99", "mean_std")
_NEEDS = {"min_max": ("min", "max"), "q99": ("q01", "q99"), "mean_std": ("mean", "std")}


class StatsError(ValueError):
    """Normalisation statistics are missing or malformed; the message names the key."""


def _bounds(stats: dict, mode: str, key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    if mode not in MODES:
        raise StatsError(f"normalisation mode {mode!r} for {key}: allowed {MODES}")
    lo_name, hi_name = _NEEDS[mode]
    missing = [n for n in (lo_name, hi_name) if n not in stats]
    if missing:
        raise StatsError(f"statistics of {key} lack {missing} (needed by mode {mode!r}); present: {sorted(stats)}")
    lo = np.asarray(stats[lo_name], dtype=np.float64).reshape(-1)
    hi = np.asarray(stats[hi_name], dtype=np.float64).reshape(-1)
    if lo.shape[0] != dim or hi.shape[0] != dim:
        raise StatsError(f"statistics of {key} have {lo.shape[0]} values, the modality has {dim} dims")
    return lo, hi


def normalize(x: np.ndarray, stats: dict, mode: str, key: str = "value") -> np.ndarray:
    """x [..., D] in robot units -> normalised [..., D] (float64)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = _bounds(stats, mode, key, x.shape[-1])
    if mode == "mean_std":
        std = np.where(hi > 0, hi, 1.0)
        return (x - lo) / std
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    y = np.where(span > 0, 2.0 * (x - lo) / safe - 1.0, 0.0)
    return np.clip(y, -1.0, 1.0)


def unnormalize(y: np.ndarray, stats: dict, mode: str, key: str = "value") -> np.ndarray:
    """Inverse of ``normalize``: normalised [..., D] -> robot units [..., D] (float64)."""
    y = np.asarray(y, dtype=np.float64)
    lo, hi = _bounds(stats, mode, key, y.shape[-1])
    if mode == "mean_std":
        std = np.where(hi > 0, hi, 1.0)
        return y * std + lo
    y = np.clip(y, -1.0, 1.0)
    return (y + 1.0) / 2.0 * (hi - lo) + lo
