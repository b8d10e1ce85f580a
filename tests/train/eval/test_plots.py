"""Plots: each writes a valid PNG (Agg backend, no display)."""
from __future__ import annotations

import numpy as np
import pytest

from gr00t_rlhf_train.eval import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and b"IEND" in data[-12:] and len(data) > 1000


@pytest.fixture
def evaluation():
    rng = np.random.default_rng(0)
    ep = np.repeat([3, 4, 5], 20)
    rows = np.tile(np.arange(20), 3)
    target = np.repeat([1.0, 0.0, 1.0], 20)
    feedback = target.astype(int)
    pred = np.clip(target * 0.6 + 0.2 + 0.2 * rng.standard_normal(60), 0, 1)
    return pred, target, ep, rows, feedback


def test_scatter_roc_and_timeline_are_pngs(tmp_path, evaluation):
    pred, target, ep, rows, fb = evaluation
    assert _is_png(plots.scatter_plot(pred, target, tmp_path / "scatter.png"))
    assert _is_png(plots.roc_plot(pred, target > 0.5, tmp_path / "roc.png", auroc=0.9,
                                  extra={"time": (rows, target > 0.5)}))
    out = plots.timeline_plot(pred, target, ep, rows, tmp_path / "sub" / "timeline.png", feedback=fb,
                              vocabulary={0: "Doing bad", 1: "Doing good"}, times=rows / 10.0)
    assert _is_png(out) and out.parent.name == "sub"


def test_timeline_without_labels(tmp_path, evaluation):
    pred, _, ep, rows, _ = evaluation
    assert _is_png(plots.timeline_plot(pred, None, ep, rows, tmp_path / "t.png"))


def test_action_plot(tmp_path):
    rng = np.random.default_rng(1)
    rec = rng.uniform(-5, 5, (30, 2))
    out = plots.action_plot(rec + rng.normal(0, 0.5, (30, 2)), rec, np.repeat([0, 1], 15), np.tile(np.arange(15), 2),
                            tmp_path / "actions.png", names=["left wheel", "right wheel"],
                            times=np.tile(np.arange(15), 2) / 10)
    assert _is_png(out)


def test_pick_episodes_spreads_over_the_ids():
    assert plots.pick_episodes(range(10), 4) == [0, 3, 6, 9]
    assert plots.pick_episodes([5, 5, 2], 4) == [2, 5]
