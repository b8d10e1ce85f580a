"""Metrics on hand-made cases: perfect, reversed, constant, ties, one class; the baselines."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gr00t_rlhf_train.eval import metrics as M


def test_perfect_predictions_give_auroc_1_and_pearson_1():
    t = np.array([0, 0, 1, 1, 0, 1], float)
    m = M.reward_metrics(t, t, [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2])
    assert m["frame.auroc"] == 1.0 and m["frame.pearson"] == pytest.approx(1.0)
    assert m["frame.spearman"] == pytest.approx(1.0)
    assert m["frame.mse"] == 0.0 and m["frame.mae"] == 0.0
    assert m["frame.accuracy"] == 1.0 and m["frame.balanced_accuracy"] == 1.0


def test_reversed_predictions_give_auroc_0_and_pearson_minus_1():
    t = np.array([0, 0, 1, 1], float)
    assert M.auroc(1 - t, t > 0.5) == 0.0
    assert M.pearson(1 - t, t) == pytest.approx(-1.0)
    fpr, tpr, thr = M.roc_curve(1 - t, t > 0.5)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.0)


def test_constant_prediction_reports_pearson_undefined_cleanly():
    """The seed's collapsed model: every frame 0.4."""
    t = np.array([0, 1, 1, 0, 1], float)
    m = M.reward_metrics(np.full(5, 0.4), t, [0] * 5, range(5))
    assert m["frame.pearson"] is None and "constant" in m["frame.pearson_note"]
    assert m["frame.spearman"] is None
    assert m["frame.auroc"] == 0.5                           # all ties: no ranking at all
    assert m["frame.accuracy"] == pytest.approx(0.4)         # everything predicted negative
    assert m["frame.balanced_accuracy"] == 0.5
    json.dumps(m, allow_nan=False)                           # JSON-friendly: no NaN anywhere


def test_auroc_counts_ties_as_half():
    # positives 0.5, 0.9; negatives 0.5, 0.1: pairs (0.5 vs 0.5) tie -> 0.5; the other three pairs win
    assert M.auroc([0.5, 0.9, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


def test_auroc_matches_pair_counting_on_random_data():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)                # many ties
    y = rng.random(200) < 0.4
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert M.auroc(s, y) == pytest.approx(brute)
    fpr, tpr, _ = M.roc_curve(s, y)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute)        # the curve's area is the AUROC
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_one_class_gives_none_with_a_reason():
    value, why = M.auroc_with_reason([0.1, 0.2], [1, 1])
    assert value is None and "only positive" in why
    m = M.reward_metrics([0.9, 0.8], [1, 1], [0, 0], [0, 1])
    assert m["frame.auroc"] is None and m["frame.auroc_note"]
    assert m["frame.balanced_accuracy"] == 1.0 and m["frame.balanced_accuracy_note"]
    with pytest.raises(ValueError, match="positive and negative"):
        M.roc_curve([0.1, 0.2], [0, 0])


def test_rankdata_averages_ties():
    assert M.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert M.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)   # monotone, not linear


def test_pearson_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert M.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_score_targets_are_positive_above_zero():
    t = np.array([-1, -0.4, 0.2, 1.0])
    m = M.reward_metrics([-0.5, -0.1, 0.1, 0.3], t, [0, 0, 1, 1], [0, 1, 0, 1])
    assert m["target_kind"] == "score" and m["positive_above"] == 0.0
    assert m["frame.positives"] == 2 and m["frame.auroc"] == 1.0 and m["frame.accuracy"] == 1.0


def test_episode_metrics_use_per_episode_means():
    # episode 0 good (1), episode 1 bad (0), episode 2 good; predictions noisy per frame
    ep = np.repeat([0, 1, 2], 4)
    t = np.repeat([1.0, 0.0, 1.0], 4)
    p = np.array([0.9, 0.2, 0.8, 0.7, 0.6, 0.1, 0.2, 0.3, 0.4, 0.6, 0.5, 0.7])
    m = M.episode_metrics(p, t, ep, cut=0.5)
    assert m["episode.count"] == 3 and m["episode.correct"] == 3
    assert m["episode.auroc"] == 1.0
    assert m["episode.mse"] == pytest.approx(np.mean((np.array([0.65, 0.3, 0.55]) - [1, 0, 1]) ** 2))


def test_thirds_split_each_episode_by_row():
    ep = np.array([0] * 6 + [1] * 3)
    rows = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2])
    assert M.episode_thirds(ep, rows).tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2]
    assert M.episode_thirds([0, 0], [0, 1], lengths={0: 9}).tolist() == [0, 0]
    # a model that is only right late: AUROC 0.5 on the first third, 1 on the last
    t = np.repeat([1.0, 0.0], 6)
    p = np.array([0.5, 0.5, 0.6, 0.7, 0.9, 0.9, 0.5, 0.5, 0.4, 0.3, 0.1, 0.1])
    m = M.reward_metrics(p, t, np.repeat([0, 1], 6), np.tile(np.arange(6), 2))
    assert m["third1.auroc"] == 0.5 and m["third3.auroc"] == 1.0 and m["third1.count"] == 4


def test_time_baseline_learns_the_sign_on_training_data():
    # rewards fall with time in every episode: the fitted line has a negative slope, Pearson +1 on new frames
    times = np.tile(np.arange(5, dtype=float), 3)
    target = -0.2 * times
    m = M.time_baseline_metrics(times, target, np.arange(4.0), -0.25 * np.arange(4.0), [7] * 4, range(4))
    assert m["baseline_time.slope"] < 0
    assert m["baseline_time.frame.pearson"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="labelled training frames"):
        M.fit_time_baseline([], [])


def test_mean_action_baseline():
    train = np.array([[1.0, -1.0], [3.0, 1.0]])
    mean, err = M.mean_action_baseline(train, np.array([[2.0, 0.0], [2.0, 2.0]]))
    assert mean.tolist() == [2.0, 0.0] and err == pytest.approx(1.0)
    assert M.action_mse(np.zeros((2, 3)), np.ones((2, 3))) == 1.0
    with pytest.raises(ValueError, match="shape"):
        M.action_mse(np.zeros(2), np.zeros(3))


def test_mismatched_lengths_are_one_line_errors():
    with pytest.raises(ValueError, match="predictions have 2 values, targets 3"):
        M.mse([1, 2], [1, 2, 3])
    assert math.isfinite(M.mae([1], [2]))


def test_time_baseline_best_sign_when_training_trends_the_other_way():
    # training rewards rise with time, the evaluated ones fall: the fitted line is wrong-signed,
    # the best-sign reference is not
    m = M.time_baseline_metrics(np.arange(5.0), np.arange(5.0), np.arange(4.0), -np.arange(4.0), [1] * 4, range(4))
    assert m["baseline_time.frame.pearson"] == pytest.approx(-1.0)
    assert m["baseline_time.best_sign_pearson"] == pytest.approx(1.0)


def test_spearman_reason_names_the_constant_values_not_ranks():
    value, why = M.spearman_with_reason([1.0, 2.0], [0.0, 0.0])
    assert value is None and "targets are constant (0)" in why
