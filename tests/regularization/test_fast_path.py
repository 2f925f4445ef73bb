"""The fused closed-form node equals plain autograd: values and gradients, every built-in,
every reduction, with gradient accumulation and loss scaling (float64, tight tolerance)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.penalties import (
    L1,
    L1L2,
    L2,
    ExpAbs,
    KLSparsity,
    Orthogonal,
    TemporalDifference,
    ToReference,
)


class Net(nn.Module):
    """(B, T, 5) -> Linear -> Sigmoid codes (B, T, 6) -> Linear -> (B, T, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(5, 6)
        self.code = nn.Sigmoid()
        self.dec = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.code(self.enc(x)))


def _rules(activity, kernel) -> dict:
    return {
        "enc": dict(kernel=kernel, bias=L2(0.3)),
        "dec": dict(kernel=Orthogonal(0.7)),
        "code": dict(activity=activity),
    }


KERNELS = [
    L1(0.1),
    L2(0.2),
    L1L2(0.05, 0.1),
    ExpAbs(0.03),
    ToReference(torch.full((6, 5), 0.1, dtype=torch.float64), 0.4),
]
ACTIVITIES = [
    L1(0.1),
    L2(0.2),
    L1L2(0.05, 0.1),
    ExpAbs(0.03),
    KLSparsity(0.2, 1.5),
    TemporalDifference(0.8, time_dim=1),
]


def _by_hand(model: Net, x: torch.Tensor, activity, kernel, reduction: str) -> torch.Tensor:
    """The hand-written autograd version of what attach computes."""
    codes = model.code(model.enc(x))
    out = model.dec(codes)
    scale = {"batch": 1 / codes.shape[0], "sum": 1.0, "mean": 1 / codes.numel()}[reduction]
    if isinstance(activity, (KLSparsity, TemporalDifference)):
        scale = 1.0
    pen = kernel(model.enc.weight) + L2(0.3)(model.enc.bias) + Orthogonal(0.7)(model.dec.weight)
    return out.square().mean() + pen + scale * activity(codes)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


@pytest.mark.parametrize("reduction", ["batch", "sum", "mean"])
@pytest.mark.parametrize("activity", ACTIVITIES, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda p: type(p).__name__)
def test_fused_equals_autograd(kernel, activity, reduction) -> None:
    torch.manual_seed(0)
    model = Net().double()
    xs = [torch.randn(4, 7, 5, dtype=torch.float64) for _ in range(2)]
    loss_scale = 1024.0  # as under AMP's GradScaler: the incoming gradient must be honoured

    expected_values = []
    for x in xs:  # two micro-batches accumulated into .grad
        value = _by_hand(model, x, activity, kernel, reduction)
        (loss_scale * value / len(xs)).backward()
        expected_values.append(value.item())
    expected = _grads(model)

    reg = reglab.attach(model, _rules(activity, kernel), activity_reduction=reduction)
    values = []
    for x in xs:
        value = model(x).square().mean() + reg.penalty()
        (loss_scale * value / len(xs)).backward()
        values.append(value.item())
    got = _grads(model)

    assert values == pytest.approx(expected_values, rel=1e-12)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_soft_tying_reference_that_requires_grad_pulls_both_tensors() -> None:
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    reg = reglab.attach(a, {"": dict(kernel=ToReference(b.weight, l2=1.0))})
    reg.penalty().backward()
    torch.testing.assert_close(a.weight.grad, 2 * (a.weight - b.weight).detach())
    torch.testing.assert_close(b.weight.grad, -2 * (a.weight - b.weight).detach())


def test_low_precision_activity_under_autocast() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    reg = reglab.attach(model, {"1": dict(activity=L2(1e-2))})
    x = torch.randn(16, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        penalty = reg.penalty()
    assert out.dtype == torch.bfloat16
    assert penalty.dtype == torch.float32  # accumulated in float32
    penalty.backward()
    assert model[0].weight.grad.dtype == torch.float32
    reference = 1e-2 * out.float().square().sum() / 16
    assert penalty.item() == pytest.approx(reference.item(), rel=1e-3)
