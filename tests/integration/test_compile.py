"""torch.compile: a compiled model with the penalty outside (one graph, no breaks, no
recompiles), and a whole compiled loss function including ``reg.penalty()`` (fullgraph)
equal to eager, forward and gradients, for every built-in kernel and activity penalty."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

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
    """(B, T, 5) -> Linear -> Sigmoid (B, T, 6) -> Linear -> (B, T, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(5, 6)
        self.code = nn.Sigmoid()
        self.dec = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.code(self.enc(x)))


KERNELS = [
    L1(0.1),
    L2(0.2),
    L1L2(0.05, 0.1),
    ExpAbs(0.03),
    Orthogonal(0.5),
    ToReference(torch.full((6, 6), 0.1), 0.4),
]
ACTIVITIES = [
    L1(0.1),
    L2(0.2),
    L1L2(0.05, 0.1),
    ExpAbs(0.03),
    KLSparsity(0.2, 1.5),
    TemporalDifference(0.8, time_dim=1),
    Orthogonal(0.3),
]


class Tower(nn.Module):
    """One (6 -> 6) Linear + Sigmoid stage per penalty, so one compiled graph exercises every
    built-in kernel penalty (on ``lin<i>``) and activity penalty (on ``act<i>``)."""

    def __init__(self, stages: int) -> None:
        super().__init__()
        self.lin = nn.ModuleList(nn.Linear(6, 6) for _ in range(stages))
        self.act = nn.ModuleList(nn.Sigmoid() for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin, act in zip(self.lin, self.act, strict=True):
            x = act(lin(x))
        return x


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()
    counters.clear()


def _graphs() -> tuple[int, dict]:
    return counters["stats"]["unique_graphs"], dict(counters["graph_break"])


def test_compiled_model_with_eager_penalty_has_one_graph_and_no_recompiles() -> None:
    torch.manual_seed(0)
    model = Net()
    reg = reglab.attach(
        model,
        {nn.Linear: dict(kernel=L1L2(1e-3, 1e-2)), "code": dict(activity=L1(1e-2))},
    )
    compiled = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(12):
        loss = compiled(torch.randn(4, 7, 5)).square().mean() + reg.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert "code.activity" in reg.terms()
    graphs, breaks = _graphs()
    assert breaks == {}
    assert graphs == 1  # compiled once over 12 steps: no recompiles
    assert counters["frames"]["ok"] == 1


def _loss_and_grads(model: nn.Module, loss_fn, x: torch.Tensor):
    model.zero_grad()
    loss = loss_fn(x)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_fullgraph_compiled_loss_equals_eager_for_every_builtin() -> None:
    torch.manual_seed(0)
    stages = max(len(KERNELS), len(ACTIVITIES))
    model = Tower(stages)
    rules = {f"lin.{i}": dict(kernel=k) for i, k in enumerate(KERNELS)}
    rules.update({f"act.{i}": dict(activity=a) for i, a in enumerate(ACTIVITIES)})
    reg = reglab.attach(model, rules)

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        return model(x).square().mean() + reg.penalty()

    x = torch.rand(4, 7, 6)
    eager_loss, eager_grads = _loss_and_grads(model, loss_fn, x)
    eager_terms = reg.terms()
    compiled = torch.compile(loss_fn, fullgraph=True)
    compiled_loss, compiled_grads = _loss_and_grads(model, compiled, x)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for c, e in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)
    compiled_terms = reg.terms()
    expected = {f"lin.{i}.kernel" for i in range(len(KERNELS))}
    expected |= {f"act.{i}.activity" for i in range(len(ACTIVITIES))}
    assert set(compiled_terms) == set(eager_terms) == expected
    for term, value in eager_terms.items():
        torch.testing.assert_close(compiled_terms[term], value, rtol=1e-5, atol=1e-7)
    # Every term is really there: the penalty is not zero for any of them.
    assert all(float(v) > 0 for v in eager_terms.values())
