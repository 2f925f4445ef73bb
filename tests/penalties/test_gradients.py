"""Closed-form gradients of every built-in penalty equal autograd's (float64, tight tolerance)."""

from __future__ import annotations

import pytest
import torch

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
