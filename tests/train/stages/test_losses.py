"""Reward losses on hand-made tensors: values, combination, pairs, class balancing, errors."""
from __future__ import annotations

import math

import pytest
import torch

from gr00t_rlhf_train.stages.losses import (LOSS_NAMES, ClassBalance, LossConfigError, RewardLoss, balanced_indices,
                                            batch_balance, bce, focal, focal_mse, mse, preference_pairs)


def test_mse_and_focal_mse_values():
    pred, y = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.0, 0.0, 1.0])
    assert torch.allclose(mse(pred, y), torch.tensor([0.0, 1.0, 4.0]))
    assert torch.allclose(focal_mse(pred, y, gamma=0.0), mse(pred, y))
    f = focal_mse(pred, y, gamma=1.0)
    # weights |e| = [0, 1, 2] normalised to mean 1 -> [0, 1, 2]; the large error dominates more than in MSE
    assert torch.allclose(f, torch.tensor([0.0, 1.0, 8.0]), atol=1e-4)
    assert f[2] / f[1] > mse(pred, y)[2] / mse(pred, y)[1]


def test_bce_binarises_at_threshold():
    logits = torch.tensor([0.0, 2.0, -2.0])
    scores = torch.tensor([-0.4, 0.6, 0.0])          # score vocabulary: > 0 is positive
    expected = torch.tensor([math.log(2), math.log1p(math.exp(-2)), math.log1p(math.exp(-2))])
    assert torch.allclose(bce(logits, scores, threshold=0.0), expected, atol=1e-6)
    assert torch.allclose(bce(logits, torch.tensor([0.0, 1.0, 0.0])), expected, atol=1e-6)


def test_focal_reduces_to_bce_and_downweights_easy_samples():
    logits, y = torch.tensor([3.0, -0.2, 0.1]), torch.tensor([1.0, 1.0, 0.0])
    assert torch.allclose(focal(logits, y, gamma=0.0), bce(logits, y))
    f, b = focal(logits, y, gamma=2.0), bce(logits, y)
    assert (f < b).all()
    assert f[0] / b[0] < f[1] / b[1]                  # the easy (confident, right) sample loses most
    fa = focal(logits, y, gamma=2.0, alpha=0.25)
    assert torch.allclose(fa, f * torch.tensor([0.25, 0.25, 0.75]))


def test_preference_pairs_scope_and_cap():
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    ep = torch.tensor([0, 0, 1, 1])
    i, j = preference_pairs(y)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 3), (2, 1), (2, 3)]
    i, j = preference_pairs(y, ep, scope="within")
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (2, 3)]
    i, j = preference_pairs(y, ep, scope="across")
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 3), (2, 1)]
    a = preference_pairs(y, max_pairs=2, generator=torch.Generator().manual_seed(3))
    b = preference_pairs(y, max_pairs=2, generator=torch.Generator().manual_seed(3))
    assert a[0].numel() == 2 and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(LossConfigError, match="episode"):
        preference_pairs(y, scope="within")


def test_bradley_terry_value_and_no_pairs():
    loss = RewardLoss.parse("bt", pairs_per_batch=0)
    pred = torch.tensor([2.0, 0.0], requires_grad=True)
    value, logs = loss(pred, torch.tensor([1.0, 0.0]))
    assert math.isclose(value.item(), math.log1p(math.exp(-2.0)), rel_tol=1e-6) and logs["pairs"] == 1
    same, logs = loss(pred, torch.tensor([1.0, 1.0]))      # one class only: no pair, zero loss, graph kept
    assert same.item() == 0.0 and logs["pairs"] == 0
    same.backward()


def test_parse_combines_and_averages_refinement_steps():
    loss = RewardLoss.parse("mse + 0.5*bt", pairs_per_batch=0)
    assert loss.terms == (("mse", 1.0), ("bt", 0.5)) and loss.spec == "mse+0.5*bt"
    assert RewardLoss.parse([("mse", 1), ("bt", 0.5)], pairs_per_batch=0).terms == loss.terms
    y = torch.tensor([1.0, 0.0])
    p1, p2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    v, logs = loss([p1, p2], y)
    expected = 0.5 * (0.0 + 1.0) + 0.5 * 0.5 * (math.log1p(math.exp(-1)) + math.log1p(math.exp(1)))
    assert math.isclose(v.item(), expected, rel_tol=1e-6)
    assert set(logs) >= {"loss", "loss/mse", "loss/bt", "pairs"}
    assert RewardLoss.parse("bce+bt").output_kind == "logit"
    assert RewardLoss.parse("focal_mse").output_kind == "value" and RewardLoss.parse("bt").output_kind == "rank"


@pytest.mark.parametrize("spec,match", [
    ("mse+hinge", "unknown; known losses: mse, focal_mse, bce, focal, bt"),
    ("mse+-1*bt", "cannot read"),
    ("0*mse", "weight 0.0 must be a positive number"),
    ("mse+mse", "appears twice"),
    ("", "cannot read"),
])
def test_bad_specs_are_one_line_errors(spec, match):
    with pytest.raises(LossConfigError, match=match) as e:
        RewardLoss.parse(spec)
    assert "\n" not in str(e.value)


def test_bad_parameters():
    with pytest.raises(LossConfigError, match="pairs_per_batch"):
        RewardLoss.parse("bt", pairs_per_batch=-1)
    with pytest.raises(LossConfigError, match="alpha"):
        RewardLoss.parse("focal", alpha=1.5)
    with pytest.raises(LossConfigError, match="pair_scope"):
        RewardLoss.parse("bt", pair_scope="nearby")
    assert set(LOSS_NAMES) == {"mse", "focal_mse", "bce", "focal", "bt"}


def test_class_balance_equalises_class_contributions():
    labels = [1.0] * 9 + [0.0] * 3
    cb = ClassBalance.from_labels(labels)
    w = cb(torch.tensor(labels))
    assert math.isclose(w[:9].sum().item(), w[9:].sum().item(), rel_tol=1e-6)
    assert math.isclose(w.mean().item(), 1.0, rel_tol=1e-6)
    assert cb(torch.tensor([0.5])).item() == 1.0                   # unseen label
    scores = torch.tensor([0.2, 0.2, -0.4, 0.2])                   # score rewards key/5 stay distinct classes
    wb = batch_balance(scores)
    assert math.isclose(wb[scores == 0.2].sum().item(), wb[scores == -0.4].sum().item(), rel_tol=1e-6)
    # weights change a weighted loss: the minority class now counts as much as the majority
    loss = RewardLoss.parse("mse")
    pred = torch.zeros(12)
    v_plain, _ = loss(pred, torch.tensor(labels))
    v_bal, _ = loss(pred, torch.tensor(labels), weight=w)
    assert math.isclose(v_plain.item(), 0.75) and math.isclose(v_bal.item(), 0.5, rel_tol=1e-6)


def test_balanced_indices_draw_classes_equally():
    labels = [1.0] * 90 + [0.0] * 10
    idx = balanced_indices(labels, num_samples=4000, seed=0)
    share = sum(labels[i] == 0.0 for i in idx) / len(idx)
    assert 0.45 < share < 0.55
    assert idx == balanced_indices(labels, num_samples=4000, seed=0)
