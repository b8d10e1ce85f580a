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
