"""Stage 3's use of the reward model's scores: advantages, sample weights and good/bad labels.

    a = advantages(scores, groups=baseline_groups(episodes, tasks, "task"))   # score minus its group's mean
    w = sample_weights(a, temperature=0.2, clip=20.0, normalize="data")      # exp(A / T), clipped, mean 1
    labels = good_labels(a, threshold=0.0)                                   # True = "good"
    cond = condition_indices(labels)                                         # rows of ADVANTAGE_CONDITIONS
    cond = drop_conditions(cond, p=0.2, generator=g)                         # -> "unconditioned" w.p. p

Reward-weighted flow matching (``rwfm``) trains on every sample with weight w (higher score -> higher
weight); advantage-conditioned flow matching (``acfm``, pi*0.6 / RECAP style) trains on every sample
with the condition "good" or "bad" from its advantage, dropped to "unconditioned" with probability p so
that one network also learns the unconditional velocity (classifier-free guidance at sampling time).
Everything here is numpy / torch on plain arrays: no model, no data set.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS

BASELINES = ("task", "episode", "global")
NORMALIZATIONS = ("data", "batch")
GOOD = ADVANTAGE_CONDITIONS.index("good")
BAD = ADVANTAGE_CONDITIONS.index("bad")
UNCONDITIONED = ADVANTAGE_CONDITIONS.index("unconditioned")


class WeightingError(ValueError):
    """A weighting / labelling parameter is invalid (one line naming it): ``field``, ``value``, ``why``."""

    def __init__(self, field: str, value, why: str):
        super().__init__(f"{field} = {value!r}: {why}")
        self.field, self.value, self.why = field, value, why


def baseline_groups(episodes: np.ndarray, tasks: list[str] | np.ndarray, baseline: str) -> np.ndarray:
    """The baseline group of every sample: its task (instruction), its episode, or one group for all -> [N] int."""
    if baseline not in BASELINES:
        raise WeightingError("baseline", baseline, f"allowed {BASELINES}")
    n = len(episodes)
    if baseline == "global":
        return np.zeros(n, np.int64)
    keys = np.asarray(episodes) if baseline == "episode" else np.asarray(tasks, dtype=object)
    _, inverse = np.unique(keys.astype(str) if baseline == "task" else keys, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def advantages(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """A = score minus the mean score of the sample's group -> [N] float64."""
    s = np.asarray(scores, np.float64)
    if s.ndim != 1 or len(s) != len(groups):
        raise WeightingError("scores", list(s.shape), f"expected [N] with N = {len(groups)}")
    if not np.isfinite(s).all():
        raise WeightingError("scores", f"{int((~np.isfinite(s)).sum())} non-finite", "every score must be finite")
    g = np.asarray(groups)
    sums = np.bincount(g, weights=s)
    counts = np.bincount(g)
    return s - (sums / np.maximum(counts, 1))[g]


def check_weighting(temperature: float, clip: float, normalize: str) -> None:
    for name, v in (("temperature", temperature), ("weight_clip", clip)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise WeightingError(name, v, "must be a finite number > 0")
    if clip < 1:
        raise WeightingError("weight_clip", clip, "must be >= 1 (it caps exp(A / temperature))")
    if normalize not in NORMALIZATIONS:
        raise WeightingError("normalize", normalize, f"allowed {NORMALIZATIONS}")


def sample_weights(adv: np.ndarray, temperature: float, clip: float, normalize: str = "data") -> np.ndarray:
    """w = min(exp(A / temperature), clip) -> [N]; ``normalize="data"``: scaled to mean 1 over the data,
    ``"batch"``: left as is here (``batch_normalize`` scales each batch to mean 1 while training)."""
    check_weighting(temperature, clip, normalize)
    a = np.asarray(adv, np.float64)
    w = np.exp(np.minimum(a / temperature, math.log(clip)))          # no overflow: capped before exp
    return w / w.mean() if normalize == "data" and len(w) else w


def batch_normalize(weights: torch.Tensor) -> torch.Tensor:
    """Scale a batch's weights [B] to mean 1."""
    return weights / weights.mean().clamp_min(1e-12)


def effective_sample_size(weights: np.ndarray) -> float:
    """(sum w)^2 / sum w^2 / N in (0, 1]: 1 when all weights are equal, small when a few dominate."""
    w = np.asarray(weights, np.float64)
    return float(w.sum() ** 2 / max((w ** 2).sum(), 1e-300) / max(len(w), 1))


def good_labels(adv: np.ndarray, threshold: float | None = 0.0, quantile: float | None = None) -> np.ndarray:
    """"good" (True) where the advantage is above ``threshold``, or (with ``quantile`` q) at or above the
    q-quantile of the advantages (q = 0.7: the top 30 % are good) -> [N] bool."""
    a = np.asarray(adv, np.float64)
    if quantile is not None:
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile < 1:
            raise WeightingError("label_quantile", quantile, "must be in (0, 1)")
        return a >= np.quantile(a, quantile)
    if threshold is None or not math.isfinite(threshold):
        raise WeightingError("label_threshold", threshold, "must be a finite number (or give label_quantile)")
    return a > threshold


def condition_indices(labels: np.ndarray) -> np.ndarray:
    """Good/bad labels [N] bool -> rows of ADVANTAGE_CONDITIONS [N] int64 (good 1, bad 2)."""
    return np.where(np.asarray(labels, bool), GOOD, BAD).astype(np.int64)


def drop_conditions(conditions: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each condition replaced by "unconditioned" with probability ``p`` (classifier-free guidance training)."""
    if not 0.0 <= p < 1.0:
        raise WeightingError("cond_dropout", p, "must be a probability in [0, 1)")
    if p == 0:
        return conditions
    keep = torch.rand(conditions.shape, generator=generator, device="cpu" if generator is None else generator.device)
    return torch.where(keep.to(conditions.device) < p, torch.full_like(conditions, UNCONDITIONED), conditions)
