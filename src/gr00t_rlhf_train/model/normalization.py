"""State and action normalisation from dataset statistics, with GR00T N1's exact semantics.

Stats of one modality key are ``{"min", "max", "mean", "std", "q01", "q99"}`` lists (one value per
dimension), as in LeRobot ``meta/stats.json`` and GR00T's ``experiment_cfg/metadata.json``.

Two semantics (``SEMANTICS``), chosen per model by ``DataConfig.normalization`` (configuration.py):

``"official"`` -- what ``Normalizer`` of Isaac-GR00T ``gr00t/data/transform/state_action.py`` does
(forward / inverse), per mode:

=========  ==================================  ============================  =======================
mode       forward                             constant dim                  inverse
=========  ==================================  ============================  =======================
min_max    2 (x - min) / (max - min) - 1,      (min == max) -> 0             (y + 1)/2 (max - min) + min,
           NOT clipped                                                       NOT clipped
q99        2 (x - q01) / (q99 - q01) - 1,      (q01 == q99) -> x unchanged   (y + 1)/2 (q99 - q01) + q01,
           then clipped to [-1, 1]             (then clipped too)            NOT clipped
mean_std   (x - mean) / std, not clipped       (std == 0) -> x unchanged     y std + mean
binary     1.0 where x > 0.5 else 0.0          --                            1.0 where y > 0.5 else 0.0
scale      x / max(|min|, |max|)               (both 0) -> 0                 none (official raises)
=========  ==================================  ============================  =======================

``"legacy"`` -- what this project did before (checkpoints without ``DataConfig.normalization``):
min_max and q99 clipped to [-1, 1] on the way in AND out, a constant dim -> 0 (inverse: min or q01),
mean_std with std == 0 only centred (x - mean; inverse y + mean). binary and scale did not exist.

Computation is float64, so ``unnormalize(normalize(x)) == x`` to double precision wherever the forward
map is invertible (inside [min, max] / [q01, q99] for the clipped modes, and always for official min_max
and mean_std with std > 0).
"""
from __future__ import annotations

import numpy as np

MODES = ("min_max", "q99", "mean_std")                   # under both semantics; invertible on continuous values
OFFICIAL_MODES = MODES + ("binary", "scale")              # what official Normalizer.forward knows
ACTION_MODES = MODES + ("binary",)                        # official modes with an inverse (what an action needs)
SEMANTICS = ("official", "legacy")
OFFICIAL, LEGACY = SEMANTICS
_NEEDS = {"min_max": ("min", "max"), "q99": ("q01", "q99"), "mean_std": ("mean", "std"), "binary": (),
          "scale": ("min", "max")}


class StatsError(ValueError):
    """Normalisation statistics are missing or malformed; the message names the key."""


def check_mode(mode: str, key: str = "value", semantics: str = OFFICIAL, invertible: bool = False) -> None:
    """One-line StatsError unless ``mode`` exists under ``semantics`` (and has an inverse when ``invertible``)."""
    if semantics not in SEMANTICS:
        raise StatsError(f"normalisation semantics {semantics!r} for {key}: allowed {SEMANTICS}")
    allowed = OFFICIAL_MODES if semantics == OFFICIAL else MODES
    if invertible:
        allowed = tuple(m for m in allowed if m in ACTION_MODES)
    if mode not in allowed:
        why = " (scale has no inverse in official GR00T: use it for states only)" if mode == "scale" and invertible else ""
        raise StatsError(f"normalisation mode {mode!r} for {key}: allowed {allowed} with {semantics!r} semantics{why}")


def _pair(stats: dict, mode: str, key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The two statistics ``mode`` reads, float64 [dim] each."""
    lo_name, hi_name = _NEEDS[mode]
    missing = [n for n in (lo_name, hi_name) if n not in stats]
    if missing:
        raise StatsError(f"statistics of {key} lack {missing} (needed by mode {mode!r}); present: {sorted(stats)}")
    lo = np.asarray(stats[lo_name], dtype=np.float64).reshape(-1)
    hi = np.asarray(stats[hi_name], dtype=np.float64).reshape(-1)
    if lo.shape[0] != dim or hi.shape[0] != dim:
        raise StatsError(f"statistics of {key} have {lo.shape[0]}/{hi.shape[0]} values ({lo_name}/{hi_name}), "
                         f"the modality has {dim} dims")
    return lo, hi


def _affine(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (2 (x - lo) / (hi - lo) - 1 where hi != lo (0 elsewhere), mask of the dims where hi != lo)."""
    live = hi != lo
    span = np.where(live, hi - lo, 1.0)
    return np.where(live, 2.0 * (x - lo) / span - 1.0, 0.0), live


def normalize(x: np.ndarray, stats: dict, mode: str, key: str = "value", semantics: str = LEGACY) -> np.ndarray:
    """x [..., D] in robot units -> normalised [..., D] (float64), under ``semantics`` (module docstring).

    The default is ``"legacy"`` so a caller that does not say keeps the behaviour of checkpoints written
    before the semantics existed; ``Gr00tProcessor`` passes its model's ``DataConfig.normalization``."""
    check_mode(mode, key, semantics)
    x = np.asarray(x, dtype=np.float64)
    if mode == "binary":
        return (x > 0.5).astype(np.float64)
    lo, hi = _pair(stats, mode, key, x.shape[-1])
    if semantics == LEGACY:
        if mode == "mean_std":
            return (x - lo) / np.where(hi > 0, hi, 1.0)
        span = hi - lo                                  # exactly the pre-semantics code
        y = np.where(span > 0, 2.0 * (x - lo) / np.where(span > 0, span, 1.0) - 1.0, 0.0)
        return np.clip(y, -1.0, 1.0)
    if mode == "mean_std":                              # official: std == 0 -> x unchanged
        live = hi != 0
        return np.where(live, (x - lo) / np.where(live, hi, 1.0), x)
    if mode == "scale":                                 # official: x / max(|min|, |max|), 0 where that is 0
        bound = np.maximum(np.abs(lo), np.abs(hi))
        live = bound != 0
        return np.where(live, x / np.where(live, bound, 1.0), 0.0)
    y, live = _affine(x, lo, hi)
    if mode == "min_max":                               # official: constant dim -> 0, no clipping
        return y
    return np.clip(np.where(live, y, x), -1.0, 1.0)     # q99: constant dim -> x, then everything clipped


def unnormalize(y: np.ndarray, stats: dict, mode: str, key: str = "value", semantics: str = LEGACY) -> np.ndarray:
    """Inverse of ``normalize``: normalised [..., D] -> robot units [..., D] (float64), under ``semantics``."""
    check_mode(mode, key, semantics, invertible=True)
    y = np.asarray(y, dtype=np.float64)
    if mode == "binary":
        return (y > 0.5).astype(np.float64)
    lo, hi = _pair(stats, mode, key, y.shape[-1])
    if mode == "mean_std":
        if semantics == LEGACY:
            return y * np.where(hi > 0, hi, 1.0) + lo
        return y * hi + lo                              # official: std == 0 -> the mean
    if semantics == LEGACY:
        y = np.clip(y, -1.0, 1.0)
    return (y + 1.0) / 2.0 * (hi - lo) + lo
