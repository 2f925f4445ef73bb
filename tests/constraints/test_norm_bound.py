"""NormBound: a Lagrangian norm bound reaches the constrained optimum of a ridge-like problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import InvalidParameterError
from reglab.constraints import MaxNorm, NormBound


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10))
    w_true = rng.normal(size=10) * 2.0  # unconstrained solution norm ~ 6 > k
    y = x @ w_true + 0.5 * rng.normal(size=200)
    return torch.from_numpy(x), torch.from_numpy(y)


def _ridge_on_the_sphere(x: torch.Tensor, y: torch.Tensor, k: float) -> tuple[torch.Tensor, float]:
    """The exact constrained optimum: ridge with the λ whose solution has norm k (bisection)."""
    n = len(x)
    a, b = x.T @ x / n, x.T @ y / n
    lo, hi = 0.0, 100.0
    for _ in range(200):
        lam = (lo + hi) / 2
        w = torch.linalg.solve(a + lam * torch.eye(10, dtype=x.dtype), b)
        lo, hi = (lam, hi) if w.norm() > k else (lo, lam)
    return w, lam


def _loss(x, y, w) -> torch.Tensor:
    return ((x @ w - y) ** 2).mean()


def test_dual_ascent_reaches_the_constrained_optimum() -> None:
    x, y = _problem()
    k = 2.0
    unconstrained = torch.linalg.lstsq(x, y).solution
    assert unconstrained.norm() > 2 * k  # the bound is active
    w_star, lam = _ridge_on_the_sphere(x, y, k)

    w = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    bound = NormBound([w], max_norm=k, lr_dual=0.5)
    optimizer = torch.optim.SGD([w], lr=0.05)
    for _ in range(3000):
        optimizer.zero_grad()
        (_loss(x, y, w) + bound.penalty()).backward()
        optimizer.step()
        bound.step()

    # Stated tolerances: norm within 0.5 % of k, loss within 0.1 % of the constrained optimum,
    # the multiplier within 1 % of its KKT value 2 λ k.
    assert w.norm().item() == pytest.approx(k, rel=5e-3)
    assert _loss(x, y, w).item() == pytest.approx(_loss(x, y, w_star).item(), rel=1e-3)
    assert bound.multiplier == pytest.approx(2 * lam * k, rel=1e-2)
    torch.testing.assert_close(w.detach(), w_star, atol=2e-2, rtol=0)

    # Projected gradient descent (the other way to impose the bound) lands on the same loss.
    v = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    project, opt = MaxNorm(k, axis=0), torch.optim.SGD([v], lr=0.05)
    for _ in range(3000):
        opt.zero_grad()
        _loss(x, y, v).backward()
        opt.step()
        with torch.no_grad():
            v.copy_(project(v))
    assert _loss(x, y, w).item() == pytest.approx(_loss(x, y, v).item(), rel=1e-3)


def test_multiplier_stays_zero_when_the_bound_is_slack() -> None:
    w = torch.nn.Parameter(torch.tensor([0.1, 0.2]))
    bound = NormBound([w], max_norm=1.0, norm="l1", lr_dual=1.0)
    assert bound.step() == 0.0
    assert bound.penalty().item() == 0.0
    state = bound.state_dict()
    bound.load_state_dict({"multiplier": 3.0})
    assert bound.multiplier == 3.0
    bound.load_state_dict(state)
    assert bound.multiplier == 0.0


def test_errors() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(
        InvalidParameterError,
        match=r"'norm' parameter of NormBound must be one of 'l2', 'l1'\. Got 'linf'",
    ):
        NormBound([w], 1.0, norm="linf")
    with pytest.raises(
        InvalidParameterError,
        match=r"'lr_dual' parameter of NormBound must be a finite number > 0\. Got 0",
    ):
        NormBound([w], 1.0, lr_dual=0)
    with pytest.raises(
        InvalidParameterError,
        match=r"'params' parameter of NormBound must be a non-empty iterable of tensors",
    ):
        NormBound([], 1.0)
