"""Reward and policy metrics in plain numpy (no scipy, no sklearn).

Every metric is a function of 1-D arrays; undefined values (Pearson of a constant prediction,
AUROC with one class) come back as ``None`` with a one-line reason, never as a warning or a
crash, so a collapsed model (the seed's constant prediction) is reported cleanly.

``reward_metrics(pred, target, episode_ids, rows)`` gathers them all in one flat, JSON-friendly
dict: frame level (``frame.*``), per-episode means (``episode.*``) and per episode third
(``third1.*`` first, ``third2.*`` middle, ``third3.*`` last third of each episode's rows).

Positives: binary targets (every value 0 or 1) are positive above ``threshold`` (0.5); score
targets (-1..1, e.g. the -5..5 vocabulary divided by 5) are positive above 0. The same cut turns
predictions into classes for accuracy and balanced accuracy.
"""
from __future__ import annotations

import math

import numpy as np

THIRDS = ("third1", "third2", "third3")


def _arrays(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"predictions have {p.size} values, targets {t.size}: they must match")
    return p, t


def mse(pred, target) -> float | None:
    p, t = _arrays(pred, target)
    return float(np.mean((p - t) ** 2)) if p.size else None


def mae(pred, target) -> float | None:
    p, t = _arrays(pred, target)
    return float(np.mean(np.abs(p - t))) if p.size else None


def pearson_with_reason(pred, target) -> tuple[float | None, str | None]:
    """Pearson correlation, or (None, why) when it is undefined (fewer than 2 values, a constant side)."""
    p, t = _arrays(pred, target)
    if p.size < 2:
        return None, f"Pearson needs at least 2 values, got {p.size}"
    if np.ptp(p) == 0:
        return None, f"predictions are constant ({p[0]:.6g}): Pearson undefined"
    if np.ptp(t) == 0:
        return None, f"targets are constant ({t[0]:.6g}): Pearson undefined"
    dp, dt = p - p.mean(), t - t.mean()
    sp, st = math.sqrt(float(dp @ dp)), math.sqrt(float(dt @ dt))
    return float(np.clip(float(dp @ dt) / (sp * st), -1.0, 1.0)), None


def pearson(pred, target) -> float | None:
    return pearson_with_reason(pred, target)[0]


def rankdata(x) -> np.ndarray:
    """Ranks 1..n, ties sharing the average of their ranks (as scipy.stats.rankdata 'average')."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]                               # exclusive
    avg = (starts + ends + 1) / 2.0                                 # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman_with_reason(pred, target) -> tuple[float | None, str | None]:
    p, t = _arrays(pred, target)
    value, reason = pearson_with_reason(p, t)         # the reasons (constant side, too few values) are the same
    if reason is not None:
        return None, reason.replace("Pearson", "Spearman")
    return pearson_with_reason(rankdata(p), rankdata(t))[0], None


def spearman(pred, target) -> float | None:
    return spearman_with_reason(pred, target)[0]


def accuracy(pred_labels, true_labels) -> float | None:
    a, b = np.asarray(pred_labels, bool).reshape(-1), np.asarray(true_labels, bool).reshape(-1)
    return float(np.mean(a == b)) if a.size else None


def balanced_accuracy(pred_labels, true_labels) -> tuple[float | None, str | None]:
    """Mean of the recall of each class present; with one class it is that class's recall (and says so)."""
    a, b = np.asarray(pred_labels, bool).reshape(-1), np.asarray(true_labels, bool).reshape(-1)
    if not b.size:
        return None, "no samples"
    recalls = [float(np.mean(a[b == c] == c)) for c in (False, True) if np.any(b == c)]
    reason = None if len(recalls) == 2 else "only one class in the targets: recall of that class"
    return float(np.mean(recalls)), reason


def auroc_with_reason(scores, labels) -> tuple[float | None, str | None]:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties
    counting 1/2 (the Mann–Whitney U statistic over the average ranks); None with one class."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores have {s.size} values, labels {y.size}: they must match")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        which = "positive" if n_pos else "negative"
        return None, f"only {which} targets ({s.size} samples): AUROC undefined"
    r = rankdata(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg)), None


def auroc(scores, labels) -> float | None:
    return auroc_with_reason(scores, labels)[0]


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (false positive rate, true positive rate, thresholds), starting at (0, 0) with threshold +inf;
    one point per distinct score (predict positive when score >= threshold). Needs both classes."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, bool).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC curve needs positive and negative targets; got {n_pos} positive, {n_neg} negative")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]     # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return (np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, s[last]])


def positive_cut(target, threshold: float = 0.5) -> float:
    """The value above which a target (and a prediction) counts as positive (see the module docstring)."""
    t = np.asarray(target, dtype=np.float64)
    binary = t.size > 0 and bool(np.all((t == 0) | (t == 1)))
    return float(threshold) if binary else 0.0


def frame_metrics(pred, target, cut: float, prefix: str) -> dict:
    """All metrics of one set of samples under ``prefix`` (e.g. ``frame``); reasons as ``<prefix>.<m>_note``."""
    p, t = _arrays(pred, target)
    out: dict = {f"{prefix}.count": int(p.size)}
    if not p.size:
        out[f"{prefix}.note"] = "no samples"
        return out
    yt, yp = t > cut, p > cut
    out[f"{prefix}.mse"], out[f"{prefix}.mae"] = mse(p, t), mae(p, t)
    for name, fn in (("pearson", pearson_with_reason), ("spearman", spearman_with_reason)):
        out[f"{prefix}.{name}"], note = fn(p, t)
        if note:
            out[f"{prefix}.{name}_note"] = note
    out[f"{prefix}.accuracy"] = accuracy(yp, yt)
    out[f"{prefix}.balanced_accuracy"], note = balanced_accuracy(yp, yt)
    if note:
        out[f"{prefix}.balanced_accuracy_note"] = note
    out[f"{prefix}.auroc"], note = auroc_with_reason(p, yt)
    if note:
        out[f"{prefix}.auroc_note"] = note
    out[f"{prefix}.positives"] = int(yt.sum())
    out[f"{prefix}.pred_mean"], out[f"{prefix}.pred_std"] = float(p.mean()), float(p.std())
    return out


def episode_means(values, episode_ids) -> tuple[np.ndarray, np.ndarray]:
    """-> (sorted episode ids, mean of ``values`` per episode)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    e = np.asarray(episode_ids).reshape(-1)
    ids, inv = np.unique(e, return_inverse=True)
    return ids, np.bincount(inv, weights=v, minlength=ids.size) / np.bincount(inv, minlength=ids.size)


def episode_metrics(pred, target, episode_ids, cut: float = 0.5) -> dict:
    """Metrics of the per-episode mean prediction against the per-episode mean target (``episode.*``),
    plus ``episode.correct`` (episodes whose mean prediction falls on the right side of ``cut``)."""
    p, t = _arrays(pred, target)
    e = np.asarray(episode_ids).reshape(-1)
    if e.size != p.size:
        raise ValueError(f"episode_ids has {e.size} values, predictions {p.size}: they must match")
    ids, mp = episode_means(p, e)
    _, mt = episode_means(t, e)
    out = frame_metrics(mp, mt, cut, "episode")
    out["episode.correct"] = int(np.sum((mp > cut) == (mt > cut)))
    return out


def episode_thirds(episode_ids, rows, lengths: dict | None = None) -> np.ndarray:
    """-> int [N] in {0, 1, 2}: which third of its episode each row falls in (row / episode length,
    the length taken from ``lengths[episode]`` or else the episode's largest row + 1)."""
    e = np.asarray(episode_ids).reshape(-1)
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    if e.size != r.size:
        raise ValueError(f"episode_ids has {e.size} values, rows {r.size}: they must match")
    out = np.zeros(e.size, dtype=np.int64)
    for ep in np.unique(e):
        m = e == ep
        n = int(lengths[int(ep)]) if lengths and int(ep) in lengths else int(r[m].max()) + 1
        out[m] = np.minimum(3 * r[m] // max(n, 1), 2)
    return out


def reward_metrics(pred, target, episode_ids, rows, threshold: float = 0.5, lengths: dict | None = None) -> dict:
    """Frame, per-episode and per-third metrics in one flat dict (floats, ints, None, strings)."""
    p, t = _arrays(pred, target)
    cut = positive_cut(t, threshold)
    out: dict = {"threshold": float(threshold), "positive_above": cut,
                 "target_kind": "binary" if cut == threshold and p.size else "score"}
    out.update(frame_metrics(p, t, cut, "frame"))
    out.update(episode_metrics(p, t, episode_ids, cut))
    thirds = episode_thirds(episode_ids, rows, lengths)
    for i, name in enumerate(THIRDS):
        out.update(frame_metrics(p[thirds == i], t[thirds == i], cut, name))
    return out


# -- baselines ------------------------------------------------------------------------------------
def fit_time_baseline(times, target) -> tuple[float, float]:
    """Least-squares line ``target ~ a + b * time since episode start`` -> (a, b); b = 0 for constant time."""
    x, y = _arrays(times, target)
    if not x.size:
        raise ValueError("the time baseline needs labelled training frames; got none")
    dx = x - x.mean()
    var = float(dx @ dx)
    b = float(dx @ (y - y.mean())) / var if var > 0 else 0.0
    return float(y.mean() - b * x.mean()), b


def time_baseline_metrics(train_times, train_target, times, target, episode_ids, rows,
                          threshold: float = 0.5, lengths: dict | None = None) -> dict:
    """Metrics of the "time since episode start" predictor, fitted on the training frames, on these frames
    (keys prefixed ``baseline_time.``). Its Pearson is +-corr(time, target), the sign learnt on training data;
    ``best_sign_pearson`` = |corr(time, target)| and ``best_sign_auroc`` = max(AUROC, 1 - AUROC) of time on
    these frames, the sign chosen on them (the issue's "time alone scores 0.67" on the 505 held-out episodes)."""
    a, b = fit_time_baseline(train_times, train_target)
    pred = a + b * np.asarray(times, dtype=np.float64)
    m = reward_metrics(pred, target, episode_ids, rows, threshold, lengths)
    keep = {k: v for k, v in m.items() if k.split(".")[0] in ("frame", "episode", *THIRDS)}
    out = {"baseline_time.intercept": a, "baseline_time.slope": b} | {f"baseline_time.{k}": v for k, v in keep.items()}
    # time with the sign that suits these frames: what "time alone" can reach here (a reference, not a model)
    r = pearson(times, target)
    out["baseline_time.best_sign_pearson"] = None if r is None else abs(r)
    auc = auroc(times, np.asarray(target, np.float64) > m["positive_above"])
    out["baseline_time.best_sign_auroc"] = None if auc is None else max(auc, 1.0 - auc)
    return out


def action_mse(pred, recorded) -> float:
    """Mean squared error over every element of two equally shaped action arrays."""
    p, r = np.asarray(pred, np.float64), np.asarray(recorded, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"predicted actions {p.shape} and recorded actions {r.shape} differ in shape")
    return float(np.mean((p - r) ** 2))


def mean_action_baseline(train_actions, recorded) -> tuple[np.ndarray, float]:
    """The mean action of the training frames [Da] and the MSE of always predicting it on ``recorded`` [..., Da]."""
    train = np.asarray(train_actions, np.float64)
    if train.size == 0:
        raise ValueError("the mean-action baseline needs training actions; got none")
    mean = train.reshape(-1, np.shape(recorded)[-1]).mean(axis=0)
    r = np.asarray(recorded, np.float64)
    return mean, float(np.mean((r - mean) ** 2))
