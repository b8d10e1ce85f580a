"""PNG plots of an evaluation (matplotlib with the Agg backend: no display needed).

Each function takes plain arrays, writes one PNG and returns its path:
``scatter_plot`` (predicted vs target), ``timeline_plot`` (per-episode reward over time with the
human feedback drawn under it as coloured bands), ``roc_plot`` and ``action_plot`` (predicted vs
recorded wheel commands of a few episodes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import roc_curve


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    fig.canvas.figure.clf()
    _pyplot().close(fig)
    return path


def pick_episodes(episode_ids, n: int = 4) -> list[int]:
    """Up to ``n`` episodes spread over the sorted distinct ids (first and last included)."""
    ids = np.unique(np.asarray(episode_ids))
    if ids.size <= n:
        return [int(i) for i in ids]
    return [int(ids[i]) for i in np.linspace(0, ids.size - 1, n).round().astype(int)]


def scatter_plot(pred, target, path: str | Path, title: str = "reward: predicted vs target") -> Path:
    plt = _pyplot()
    p, t = np.asarray(pred, float), np.asarray(target, float)
    fig, ax = plt.subplots(figsize=(5, 5))
    rng = np.random.default_rng(0)
    jitter = 0.01 * (np.ptp(t) or 1.0) * rng.standard_normal(t.size)     # spread discrete targets a little
    ax.scatter(t + jitter, p, s=4, alpha=0.3)
    lo, hi = float(min(t.min(initial=0), p.min(initial=0))), float(max(t.max(initial=1), p.max(initial=1)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlabel("target (next.reward)")
    ax.set_ylabel("predicted reward")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def roc_plot(scores, labels, path: str | Path, auroc: float | None = None, extra: dict | None = None) -> Path:
    """ROC of ``scores`` against boolean ``labels``; ``extra`` adds curves {name: (scores, labels)}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (s, y) in {"model": (scores, labels), **(extra or {})}.items():
        fpr, tpr, _ = roc_curve(s, y)
        area = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (frame level)" + (f": AUROC {auroc:.3f}" if auroc is not None else ""))
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _label(key: int, vocabulary: dict | None, width: int = 32) -> str:
    """Legend text of a feedback key: "key: text", the text cut to ``width`` characters."""
    text = (vocabulary or {}).get(key)
    if text is None:
        return f"feedback {key}"
    return f"{key}: {text if len(text) <= width else text[:width - 1] + '…'}"


def timeline_plot(pred, target, episode_ids, rows, path: str | Path, feedback=None, vocabulary: dict | None = None,
                  episodes: list[int] | None = None, times=None) -> Path:
    """One panel per episode: predicted and target reward against time (``times``: seconds since the episode
    start of each row; else the row), the human feedback key of each row drawn under the curves as a coloured
    band (one colour per key of ``vocabulary``)."""
    plt = _pyplot()
    e, r = np.asarray(episode_ids), np.asarray(rows)
    p = np.asarray(pred, float)
    t = None if target is None else np.asarray(target, float)
    fb = None if feedback is None else np.asarray(feedback)
    episodes = episodes if episodes is not None else pick_episodes(e)
    keys = sorted(vocabulary) if vocabulary else (sorted({int(k) for k in fb[fb >= 0]}) if fb is not None else [])
    cmap = plt.get_cmap("RdYlGn")
    colours = {k: cmap(i / max(len(keys) - 1, 1)) for i, k in enumerate(keys)}
    fig, axes = plt.subplots(len(episodes), 1, figsize=(11, 2.2 * max(len(episodes), 1)), squeeze=False)
    for ax, ep in zip(axes[:, 0], episodes):
        m = e == ep
        order = np.argsort(r[m])
        x = (np.asarray(times, float)[m] if times is not None else r[m])[order]
        ax.plot(x, p[m][order], color="tab:blue", lw=1.2, label="predicted")
        if t is not None:
            ax.plot(x, t[m][order], color="black", lw=1.0, ls="--", label="target")
        lo = min(p[m].min(), t[m].min() if t is not None else np.inf, 0.0)
        span = max(max(p[m].max(), t[m].max() if t is not None else -np.inf, 1.0) - lo, 1e-6)
        band = (lo - 0.18 * span, lo - 0.05 * span)
        if fb is not None:
            f = fb[m][order]
            dx = np.diff(x).mean() if x.size > 1 else 1.0
            for k in keys:
                sel = f == k
                if sel.any():
                    ax.bar(x[sel], band[1] - band[0], width=dx, bottom=band[0], color=colours[k], align="edge",
                           linewidth=0, label=_label(k, vocabulary))
        ax.set_ylim(band[0] - 0.02 * span, lo + 1.05 * span)
        ax.set_title(f"episode {ep}", fontsize=9)
        ax.set_ylabel("reward")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    axes[-1, 0].set_xlabel("time since episode start (s)" if times is not None else "row")
    fig.tight_layout()
    return _save(fig, path)


def action_plot(pred, recorded, episode_ids, rows, path: str | Path, names: list[str] | None = None,
                episodes: list[int] | None = None, times=None) -> Path:
    """Predicted (first action of each chunk) vs recorded commands [N, Da] for a few episodes, one row
    of panels per episode and one column per action dimension (e.g. left and right wheel); x as in
    ``timeline_plot``."""
    plt = _pyplot()
    p, a = np.asarray(pred, float), np.asarray(recorded, float)
    e, r = np.asarray(episode_ids), np.asarray(rows)
    episodes = episodes if episodes is not None else pick_episodes(e, 3)
    dims = p.shape[-1]
    names = names or [f"action[{i}]" for i in range(dims)]
    fig, axes = plt.subplots(len(episodes), dims, figsize=(4 * dims, 2.2 * max(len(episodes), 1)), squeeze=False)
    for row_axes, ep in zip(axes, episodes):
        m = e == ep
        order = np.argsort(r[m])
        x = (np.asarray(times, float)[m] if times is not None else r[m])[order]
        for d, ax in enumerate(row_axes):
            ax.plot(x, a[m][order, d], color="black", lw=1.0, label="recorded")
            ax.plot(x, p[m][order, d], color="tab:orange", lw=1.0, label="predicted")
            ax.set_title(f"episode {ep}: {names[d]}", fontsize=9)
            ax.legend(loc="upper right", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time since episode start (s)" if times is not None else "row")
    fig.tight_layout()
    return _save(fig, path)
