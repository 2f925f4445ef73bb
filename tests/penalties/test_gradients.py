"""Closed-form gradients of every built-in penalty equal autograd's (float64, tight tolerance)."""

from __future__ import annotations

import pytest
import torch

from reglab.penalties import L1, L1L2, L2
from tests.conftest import penalty_examples


def _input_for(penalty) -> torch.Tensor:
    name = type(penalty).__name__
    if name == "KLSparsity":
        return torch.rand(16, 5, dtype=torch.float64) * 0.9 + 0.05
    if name == "TemporalDifference":
        return torch.randn(3, 7, 4, dtype=torch.float64)
    return torch.randn(6, 5, dtype=torch.float64)


@pytest.mark.parametrize("penalty", penalty_examples(), ids=lambda p: type(p).__name__)
def test_closed_form_gradient_matches_autograd(penalty) -> None:
    x = _input_for(penalty).requires_grad_()
    (expected,) = torch.autograd.grad(penalty(x), x)
    got = penalty.gradient(x.detach())
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("penalty", penalty_examples(), ids=lambda p: type(p).__name__)
def test_gradient_returns_a_fresh_tensor_the_caller_may_scale_in_place(penalty) -> None:
    x = _input_for(penalty)
    before = x.clone()
    g = penalty.gradient(x)
    g.mul_(2.0)
    torch.testing.assert_close(x, before)


_MEMBERS = [  # (K,) coefficients with zero runs, as a stacked study makes them
    torch.tensor([0.0, 0.0, 0.3, 0.3, 0.0, 0.5], dtype=torch.float64),
    torch.tensor([0.2, 0.0, 0.0, 0.1, 0.1, 0.0], dtype=torch.float64),
    torch.zeros(6, dtype=torch.float64),
]


def _per_member_reference(x: torch.Tensor, l1: object, l2: object) -> torch.Tensor:
    """Σ_k l1_k Σ|x_k| + l2_k Σx_k², one member at a time."""
    total = x.new_zeros(())
    for k in range(x.shape[0]):
        c1 = l1[k] if isinstance(l1, torch.Tensor) else l1
        c2 = l2[k] if isinstance(l2, torch.Tensor) else l2
        total = total + c1 * x[k].abs().sum() + c2 * x[k].square().sum()
    return total


@pytest.mark.parametrize(
    "make",
    [
        lambda a, b: L1(a),
        lambda a, b: L2(b),
        lambda a, b: L1L2(a, b),
        lambda a, b: L1L2(a, 0.05),
        lambda a, b: L1L2(0.0, b),
    ],
    ids=["L1", "L2", "L1L2", "L1L2-shared-l2", "L1L2-zero-l1"],
)
@pytest.mark.parametrize("pair", [(0, 1), (1, 0), (2, 2), (0, 2)])
def test_per_member_coefficients_skip_zero_members_exactly(make, pair) -> None:
    """Members whose coefficients are zero are skipped on the CPU; value and closed-form
    gradient still equal the member-by-member formula and autograd (a zero member's gradient
    is exactly 0)."""
    l1, l2 = _MEMBERS[pair[0]], _MEMBERS[pair[1]]
    penalty = make(l1, l2)
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    expected = _per_member_reference(x, getattr(penalty, "l1", 0.0), getattr(penalty, "l2", 0.0))
    value = penalty(x)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    (want,) = torch.autograd.grad(expected, x)
    (through_call,) = torch.autograd.grad(value, x)
    with torch.no_grad():
        torch.testing.assert_close(penalty(x), expected.detach(), rtol=1e-12, atol=1e-12)
    got = penalty.gradient(x.detach())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(through_call, want, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("factor", [1.0, 0.25, torch.tensor(0.25, dtype=torch.float64)])
@pytest.mark.parametrize(
    "penalty",
    [L1L2(_MEMBERS[0], _MEMBERS[1]), L1(_MEMBERS[0]), L2(_MEMBERS[1]), L1L2(0.3, 0.2), L2(0.1)],
    ids=["L1L2-members", "L1-members", "L2-members", "L1L2", "L2"],
)
def test_add_gradient_in_place_equals_adding_the_gradient(penalty, factor) -> None:
    """``add_gradient_`` (the folded path) adds exactly ``factor · gradient(x)``, also for a
    tensor factor (a loss scale), without touching members whose coefficients are zero."""
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    grad = torch.randn_like(x)
    want = grad + penalty.gradient(x) * factor
    penalty.add_gradient_(grad, x, factor)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)


def test_per_member_coefficients_changed_in_place_are_seen() -> None:
    """The member runs are cached per coefficient tensor; an in-place change (a schedule, a
    hand edit) turns members on and off at the next call."""
    l1 = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    penalty = L1(l1)
    x = torch.randn(3, 4, dtype=torch.float64)
    assert float(penalty(x)) == pytest.approx(0.5 * float(x[1].abs().sum()))
    l1.copy_(torch.tensor([0.25, 0.0, 0.0]))
    assert float(penalty(x)) == pytest.approx(0.25 * float(x[0].abs().sum()))
    torch.testing.assert_close(penalty.gradient(x)[0], 0.25 * torch.sign(x[0]))
    assert not penalty.gradient(x)[1:].any()
