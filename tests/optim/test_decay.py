"""Loss penalty vs optimizer weight decay, exactly: Keras' ``L2(l2)`` on the loss is SGD's
``weight_decay = 2·l2`` (float64, several steps, with and without momentum and Nesterov) and
Adam's coupled ``weight_decay = 2·l2``; AdamW's decoupled decay is different, and the tests
pin down how with closed forms."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab.penalties import L2

L2_COEF = 3e-3
STEPS = 6


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(8, 5, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (8,), generator=g),
        )
        for _ in range(STEPS)
    ]


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, reg: reglab.Regularization | None):
    for x, y in _batches():
        loss = F.cross_entropy(model(x), y) + (reg.penalty() if reg is not None else 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("sgd", lambda groups: torch.optim.SGD(groups, lr=0.3)),
        ("momentum", lambda groups: torch.optim.SGD(groups, lr=0.3, momentum=0.9)),
        ("nesterov", lambda groups: torch.optim.SGD(groups, lr=0.3, momentum=0.9, nesterov=True)),
        ("adam (coupled)", lambda groups: torch.optim.Adam(groups, lr=0.01)),
    ],
)
def test_l2_penalty_equals_coupled_weight_decay_of_twice_the_coefficient(name, make) -> None:
    """``L2(l2)`` adds ``2·l2·w`` to the gradient, which is what ``weight_decay=2·l2`` adds in
    SGD and in (non-decoupled) Adam: the same training, to float64 rounding."""
    penalised = _model()
    reg = reglab.attach(penalised, {nn.Linear: {"kernel": L2(L2_COEF)}})
    with_penalty = _train(penalised, make(penalised.parameters()), reg)
    decayed = _model()
    with_decay = _train(decayed, make(reglab.param_groups(decayed, 2 * L2_COEF)), None)
    for a, b in zip(with_penalty, with_decay, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)


def test_adamw_decays_decoupled_while_adam_normalises_the_penalty_away() -> None:
    """A weight with no data gradient, two ways. Adam + ``L2(l2)``: the gradient ``2·l2·w`` is
    divided by its own RMS, so every step moves ``w`` by ``lr`` whatever ``l2`` is (a
    scale-free push). AdamW: ``w ← w · (1 − lr·wd)`` each step, geometric, proportional to
    ``wd`` and independent of Adam's statistics."""
    lr, steps = 0.01, 20
    w0 = torch.tensor([2.0, -0.5, 1e-3], dtype=torch.float64)
    trajectories = {}
    for l2 in (1e-4, 1e-1):
        w = nn.Parameter(w0.clone())
        adam = torch.optim.Adam([w], lr=lr, eps=1e-30)
        trajectories[l2] = []
        for _ in range(steps):
            adam.zero_grad()
            L2(l2)(w).backward()
            adam.step()
            trajectories[l2].append(w.detach().clone())
        # The first step is exactly lr · sign(w), whatever l2 is: m̂ / √v̂ = g / |g|.
        torch.testing.assert_close(trajectories[l2][0], w0 - lr * w0.sign(), rtol=1e-12, atol=0)
    # A 1000× stronger penalty trains identically: Adam is invariant to the gradient's scale.
    for a, b in zip(trajectories[1e-4], trajectories[1e-1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
    wd = 0.5
    w = nn.Parameter(w0.clone())
    adamw = torch.optim.AdamW([w], lr=lr, weight_decay=wd)
    for _ in range(steps):
        adamw.zero_grad()
        w.grad = torch.zeros_like(w)  # no data gradient: only the decoupled decay acts
        adamw.step()
    torch.testing.assert_close(w.detach(), w0 * (1 - lr * wd) ** steps, rtol=1e-12, atol=0)


def test_adamw_is_not_adam_with_an_l2_penalty() -> None:
    """On a real loss the two trainings differ (AdamW ≠ Adam + L2(wd/2))."""
    penalised = _model()
    reg = reglab.attach(penalised, {nn.Linear: {"kernel": L2(0.05)}})
    adam_l2 = _train(penalised, torch.optim.Adam(penalised.parameters(), lr=0.01), reg)
    decoupled = _model()
    adamw = _train(decoupled, torch.optim.AdamW(reglab.param_groups(decoupled, 0.1), lr=0.01), None)
    gap = max(float((a - b).abs().max()) for a, b in zip(adam_l2, adamw, strict=True))
    assert gap > 1e-4, gap


def test_param_groups_leave_biases_undecayed_in_training() -> None:
    """Only kernels shrink under decay: with a zero learning signal (lr on a zero loss),
    SGD's decay scales each kernel by (1 − lr·wd) and leaves biases alone."""
    model = _model()
    before = copy.deepcopy(model)
    sgd = torch.optim.SGD(reglab.param_groups(model, 0.5), lr=0.1)
    sgd.zero_grad()
    (0.0 * model(torch.zeros(1, 5, dtype=torch.float64)).sum()).backward()
    sgd.step()
    for (name, p), q in zip(model.named_parameters(), before.parameters(), strict=True):
        factor = 0.95 if name.endswith("weight") else 1.0
        torch.testing.assert_close(p.detach(), q.detach() * factor, msg=name)
