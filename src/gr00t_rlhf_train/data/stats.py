"""Per-key statistics of numeric dataset columns (meta/stats.json): mean, std, min, max, q01, q99."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from gr00t_rlhf_train.data.features import STAT_NAMES


def column_stats(values: np.ndarray) -> dict[str, list[float]]:
    """Statistics of one column, per vector entry: values [N] or [N, D] -> each stat a list of D."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]  # [N, 1]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"column_stats: need a non-empty [N] or [N, D] array, got shape {list(x.shape)}")
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)  # [D], [D]
    out = {
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "q01": q01,
        "q99": q99,
    }
    return {k: [float(v) for v in out[k]] for k in STAT_NAMES}


def compute_stats(columns: Mapping[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """Statistics of every column in ``columns`` (name -> [N] or [N, D] array)."""
    return {name: column_stats(arr) for name, arr in columns.items()}


def stats_mismatch(stored, computed: Mapping[str, Mapping], keys, tolerance: float = 0.1) -> list[str]:
    """How ``stored`` (a stats.json document) disagrees with ``computed``, one line per key; [] if it agrees.

    Means and stds are compared in units of the data's std (per entry, the largest difference is
    reported), so a stats.json copied from another dataset reads e.g. "observation.state: mean
    differs by up to 3.2 (std units)". Differences up to ``tolerance`` std units are accepted.
    """
    if not isinstance(stored, Mapping):
        return [f"not a JSON object of key -> statistics ({type(stored).__name__})"]
    out = []
    for key in keys:
        if key not in computed:
            continue
        s = stored.get(key)
        if not isinstance(s, Mapping):
            out.append(f"{key}: missing")
            continue
        try:
            sm, ss = np.asarray(s.get("mean"), np.float64), np.asarray(s.get("std"), np.float64)
        except (TypeError, ValueError):
            out.append(f"{key}: mean/std are not lists of numbers")
            continue
        cm, cs = np.asarray(computed[key]["mean"], np.float64), np.asarray(computed[key]["std"], np.float64)
        if sm.shape != cm.shape or ss.shape != cs.shape:
            out.append(f"{key}: {sm.size} values per entry, the data has {cm.size}")
            continue
        if not (np.all(np.isfinite(sm)) and np.all(np.isfinite(ss))):
            out.append(f"{key}: mean/std hold NaN or inf")
            continue
        scale = np.where(cs > 1e-8, cs, 1.0)  # [D]
        dm, ds = float(np.max(np.abs(sm - cm) / scale)), float(np.max(np.abs(ss - cs) / scale))
        if dm > tolerance or ds > tolerance:
            out.append(f"{key}: mean differs by up to {dm:.3g}, std by up to {ds:.3g} (std units)")
    return out
