"""Proximal L1: soft-thresholding by ``lr · l1`` after each step gives exact zeros, and with
full-batch SGD it is ISTA, which converges to the lasso solution (scikit-learn's ``Lasso`` as
the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso
from torch import nn

import reglab
from reglab import InvalidParameterError
from reglab.penalties import L1


def _problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 30))
    w = np.zeros(30)
    w[:6] = rng.uniform(1, 3, 6) * rng.choice([-1, 1], 6)
    return X, X @ w + 0.5 * rng.standard_normal(120)


@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_ista_reaches_the_lasso_solution_with_its_exact_zeros(alpha: float) -> None:
    """min (1/2n)‖Xw − y‖² + α‖w‖₁: SGD with lr = 1/L plus the proximal step, full batch."""
    X, y = _problem()
    reference = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(X, y)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    lipschitz = float(torch.linalg.eigvalsh(Xt.T @ Xt / len(y)).max())
    w = nn.Parameter(torch.zeros(30, dtype=torch.float64))
    sgd = torch.optim.SGD([w], lr=1.0 / lipschitz)
    prox = reglab.proximal_l1(sgd, [w], l1=alpha)
    for _ in range(5000):
        sgd.zero_grad()
        ((Xt @ w - yt) ** 2).sum().div(2 * len(y)).backward()
        sgd.step()
    np.testing.assert_allclose(w.detach().numpy(), reference.coef_, atol=1e-8)
    assert ((w.detach().numpy() == 0) == (reference.coef_ == 0)).all(), "zero patterns differ"
    assert (reference.coef_ == 0).sum() >= 10  # the test is about exact zeros
    torch.testing.assert_close(prox.value(), alpha * w.detach().abs().sum())


def test_proximal_l1_gives_exact_zeros_where_subgradient_l1_gives_near_zeros() -> None:
    X, y = _problem(1)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def train(proximal: bool) -> torch.Tensor:
        w = nn.Parameter(torch.zeros(30, dtype=torch.float64))
        sgd = torch.optim.SGD([w], lr=0.05)
        if proximal:
            reglab.proximal_l1(sgd, [w], l1=0.3)
        for _ in range(2000):
            loss = ((Xt @ w - yt) ** 2).sum().div(2 * len(y))
            if not proximal:
                loss = loss + L1(0.3)(w)
            sgd.zero_grad()
            loss.backward()
            sgd.step()
        return w.detach()

    subgradient, proximal = train(False), train(True)
    assert int((subgradient == 0).sum()) == 0
    assert int((subgradient.abs() < 0.05).sum()) >= 15  # near zero, oscillating around it
    assert int((proximal == 0).sum()) >= 15


def test_threshold_is_each_groups_current_learning_rate() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    for p in model.parameters():
        nn.init.constant_(p, 1.0)
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[1].parameters()}],
        lr=0.01,
    )
    prox = reglab.proximal_l1(opt, model, l1=2.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for expected in ([0.8, 0.98], [0.7, 0.97]):  # thresholds 0.2/0.02, then 0.1/0.01
        opt.zero_grad()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        scheduler.step()
        torch.testing.assert_close(model[0].weight, torch.full((4, 4), expected[0]))
        torch.testing.assert_close(model[1].weight, torch.full((2, 4), expected[1]))
    torch.testing.assert_close(model[0].bias, torch.ones(4))  # kernels only
    prox.remove()
    opt.step()
    torch.testing.assert_close(model[0].weight, torch.full((4, 4), 0.7))


def test_bad_input_is_named() -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidParameterError, match=r"'l1' parameter of proximal_l1"):
        reglab.proximal_l1(opt, model, l1=-1)
    with pytest.raises(InvalidParameterError, match=r"1 of the 1 parameters are not in the opt"):
        reglab.proximal_l1(opt, [nn.Parameter(torch.ones(2))], l1=0.1)
    with pytest.raises(InvalidParameterError, match=r"'params' parameter of proximal_l1"):
        reglab.proximal_l1(opt, nn.ReLU(), l1=0.1)
