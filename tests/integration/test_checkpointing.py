"""Activation checkpointing, reentrant and not: every forward's output is penalised exactly
once, in its own step; the recomputation in backward adds nothing, then or later."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import reglab
from reglab.penalties import L1, L2, KLSparsity, TemporalDifference


class Blocks(nn.Module):
    """stem -> 3 x (Linear -> act) blocks, each optionally under checkpoint -> head."""

    def __init__(self, act: type[nn.Module] = nn.ReLU, reentrant: bool | None = None) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), act()) for _ in range(3))
        self.head = nn.Linear(8, 2)
        self.reentrant = reentrant  # None: no checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            if self.reentrant is None:
                h = block(h)
            else:
                h = checkpoint(block, h, use_reentrant=self.reentrant)
        return self.head(h)


def _train(model: nn.Module, rules: dict, steps: int = 3, accumulate: int = 1):
    """SGD steps; returns per-step (penalty value, terms, grads) and the final parameters."""
    torch.manual_seed(1)
    data = [torch.randn(5, 7, 4) for _ in range(steps * accumulate)]
    reg = reglab.attach(model, rules)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    log = []
    for s in range(steps):
        optimizer.zero_grad()
        values = []
        for a in range(accumulate):
            out = model(data[s * accumulate + a])
            penalty = reg.penalty()
            values.append(float(penalty.detach()))
            ((out.square().mean() + penalty) / accumulate).backward()
        terms = {k: float(v) for k, v in reg.terms().items()}
        grads = [p.grad.clone() for p in model.parameters()]
        optimizer.step()
        log.append((values, terms, grads))
    reg.penalty()  # nothing was left behind by the recomputations
    assert not [k for k in reg.terms() if k.endswith("activity")]
    return log, [p.detach().clone() for p in model.parameters()]


RULES = {
    "blocks.0.1": dict(activity=L1(0.05)),
    "blocks.1.1": dict(activity=L2(0.1)),
    "blocks.2": dict(activity=TemporalDifference(0.3, time_dim=1)),
    nn.Linear: dict(kernel=L2(0.01)),
}


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "non-reentrant"])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_checkpointed_training_equals_plain_training(reentrant: bool, accumulate: int) -> None:
    torch.manual_seed(0)
    plain = Blocks()
    checkpointed = copy.deepcopy(plain)
    checkpointed.reentrant = reentrant
    expected, expected_params = _train(plain, RULES, accumulate=accumulate)
    got, got_params = _train(checkpointed, RULES, accumulate=accumulate)
    for (ev, et, eg), (gv, gt, gg) in zip(expected, got, strict=True):
        assert gv == pytest.approx(ev, rel=1e-6)
        assert gt == pytest.approx(et, rel=1e-6)
        assert set(gt) == {
            "blocks.0.1.activity",
            "blocks.1.1.activity",
            "blocks.2.activity",
            "stem.kernel",
            "blocks.0.0.kernel",
            "blocks.1.0.kernel",
            "blocks.2.0.kernel",
            "head.kernel",
        }
        for e, g in zip(eg, gg, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    for e, g in zip(expected_params, got_params, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "non-reentrant"])
def test_kl_sparsity_on_checkpointed_sigmoid_codes(reentrant: bool) -> None:
    torch.manual_seed(0)
    plain = Blocks(act=nn.Sigmoid)
    checkpointed = copy.deepcopy(plain)
    checkpointed.reentrant = reentrant
    rules = {"blocks.*.1": dict(activity=KLSparsity(0.1, 0.5))}
    expected, _ = _train(plain, rules, steps=2)
    got, _ = _train(checkpointed, rules, steps=2)
    for (_, et, eg), (_, gt, gg) in zip(expected, got, strict=True):
        assert gt == pytest.approx(et, rel=1e-6)
        for e, g in zip(eg, gg, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


def test_reentrant_penalty_of_a_checkpointed_block_is_in_the_step_value() -> None:
    """The no-grad forward of reentrant checkpointing records the value at once, so the
    penalty returned to the loss holds it (not only the gradient added later)."""
    torch.manual_seed(0)
    model = Blocks(reentrant=True)
    reg = reglab.attach(model, {"blocks.0.1": dict(activity=L1(1.0))}, activity_reduction="sum")
    x = torch.randn(3, 4)
    out = model(x)
    with torch.no_grad():
        codes = model.blocks[0](model.stem(x))
    penalty = reg.penalty()
    assert float(penalty) == pytest.approx(float(codes.abs().sum()), rel=1e-6)
    (out.sum() + penalty).backward()
    assert reg.penalty().item() == 0.0
