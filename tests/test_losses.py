"""SoftLabelLoss against hand-computed values, for index and probability targets."""

from __future__ import annotations

import math

import pytest
import torch

import lightlabel as ll

S = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
T = torch.tensor([[0.0, 0.0], [1.0, 1.0]])


def _ce(logits_row, probs_row):
    lse = math.log(sum(math.exp(v) for v in logits_row))
    return -sum(p * (v - lse) for v, p in zip(logits_row, probs_row))


def test_mse_plus_ce_by_hand():
    # MSE over the 4 entries: (1 + 0 + 1 + 1) / 4 = 0.75
    ce = (_ce([1, 0], [1, 0]) + _ce([0, 2], [0, 1])) / 2
    got = ll.soft_label_loss(S, T, torch.tensor([0, 1]), ce_weight=0.025)
    assert got.item() == pytest.approx(0.75 + 0.025 * ce, rel=1e-6)
    assert ll.SoftLabelLoss(ce_weight=0)(S, T).item() == pytest.approx(0.75)


def test_probability_targets_by_hand():
    probs = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    ce = (_ce([1, 0], [0.25, 0.75]) + _ce([0, 2], [0.5, 0.5])) / 2
    got = ll.SoftLabelLoss(ce_weight=1.0)(S, T, probs)
    assert got.item() == pytest.approx(0.75 + ce, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_and_soft_ce_by_hand(temperature):
    def softmax(row):
        e = [math.exp(v / temperature) for v in row]
        return [v / sum(e) for v in e]

    kl = 0.0
    sce = 0.0
    for s_row, t_row in zip(S.tolist(), T.tolist()):
        p, q = softmax(t_row), softmax(s_row)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        sce += -sum(pi * math.log(qi) for pi, qi in zip(p, q))
    kl, sce = kl / 2 * temperature**2, sce / 2
    got_kl = ll.soft_label_loss(S, T, kind="kl", ce_weight=0, temperature=temperature)
    got_sce = ll.soft_label_loss(S, T, kind="soft_ce", ce_weight=0, temperature=temperature)
    assert got_kl.item() == pytest.approx(kl, rel=1e-5)
    assert got_sce.item() == pytest.approx(sce, rel=1e-5)


def test_gradient_reaches_student_only():
    s = S.clone().requires_grad_()
    t = T.clone().requires_grad_()
    ll.SoftLabelLoss()(s, t, torch.tensor([0, 1])).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize(
    "kwargs,match",
    [({"kind": "l1"}, "kind"), ({"ce_weight": -1}, "ce_weight"), ({"temperature": 0}, "temperature"),
     ({"ce_weight": float("nan")}, "`ce_weight` must be a finite number >= 0, got nan"),
     ({"ce_weight": float("inf")}, "ce_weight"), ({"ce_weight": True}, "ce_weight"),
     ({"temperature": float("inf")}, "`temperature` must be a finite number > 0, got inf")],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ll.SoftLabelLoss(**kwargs)


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2\) and \(2, 3\)"):
        ll.soft_label_loss(S, torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        ll.soft_label_loss(S, T, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="targets"):
        ll.soft_label_loss(S, T, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="required"):
        ll.soft_label_loss(S, T, None)


@pytest.mark.parametrize("targets, match", [
    (torch.tensor([0, 5]), r"class indices in \[0, 2\), got values from 0 to 5"),
    (torch.tensor([-1, 0]), r"class indices in \[0, 2\)"),
    (torch.tensor([0, 1], dtype=torch.int32), "must be int64"),
    (torch.tensor([[2.0, -1.0], [0.5, 0.5]]), "non-negative with rows summing to 1"),
    (torch.tensor([[0.0, 0.0], [0.5, 0.5]]), "rows summing to 1"),
    (torch.tensor([[0, 1], [1, 0]]), "must be float"),
])
def test_targets_that_are_not_classes_or_probabilities_are_refused(targets, match):
    """They would give a finite, meaningless loss (negative or unnormalised rows) or an error naming no argument."""
    with pytest.raises(ValueError, match=match):
        ll.soft_label_loss(S, T, targets)
    assert torch.isfinite(ll.soft_label_loss(S, T, torch.tensor([[0.3, 0.7], [1.0, 0.0]])))
