"""Coefficient schedules: closed-form values, the handle's step counting, training equal to a
hand-written loop whose coefficient changes each step (on the multi-tensor fast path, and in a
``torch.compile``'d loss without recompiling), ``NormBound``'s bound, resume and logging."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.nn import functional as F

import reglab
from reglab import InvalidParameterError
from reglab.constraints import NormBound
from reglab.penalties import L1L2, L2
from reglab.schedules import Constant, Cosine, Linear, Step, Warmup, registry
from reglab.training import fit


def test_closed_forms() -> None:
    assert [Linear(1.0, 3.0, 4)(t) for t in (0, 2, 4, 9)] == [1.0, 2.0, 3.0, 3.0]
    assert [Warmup(0.2, 4)(t) for t in (0, 1, 4, 100)] == [0.0, 0.05, 0.2, 0.2]
    assert [Step(1.0, 0.5, 3)(t) for t in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]
    assert Constant(0.3)(1000) == 0.3
    cosine = Cosine(1.0, 0.0, 10)
    for t in (0, 3, 5, 10, 20):
        expected = 0.5 * (1 + math.cos(math.pi * min(t, 10) / 10))
        assert cosine(t) == pytest.approx(expected, abs=1e-15)
    for s in (Linear(1.0, 3.0, 4), Cosine(1.0, 0.0, 10), Step(1.0, 0.5, 3), Warmup(0.2, 4)):
        assert registry.get(registry.serialize(s)) == s
    assert registry.get({"class_name": "warmup", "config": {"value": 1.0, "steps": 2}})(1) == 0.5


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def test_a_scheduled_penalty_trains_like_a_hand_written_changing_coefficient() -> None:
    """The fast path (one multi-tensor group) sees every new value: the same training as
    ``loss + f(t) · Σ w²`` written by hand, to float64 rounding."""
    fn = Cosine(1e-2, 1e-4, 5)
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    penalty = L2(123.0)  # overwritten with fn(0) at once
    reg = reglab.attach(model, {nn.Linear: {"kernel": penalty}})
    handle = reglab.schedule(penalty, fn, opt)
    assert penalty.l2 == fn(0)
    reference = _model()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    for t in range(8):
        loss = F.cross_entropy(model(x), y) + reg.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        kernels = (reference[0].weight, reference[2].weight)
        ref_loss = F.cross_entropy(reference(x), y) + fn(t) * sum(w.pow(2).sum() for w in kernels)
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
        assert handle.steps == t + 1
        assert penalty.l2 == fn(t + 1)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-13, atol=0)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_a_compiled_loss_reads_scheduled_coefficients_without_recompiling() -> None:
    torch._dynamo.reset()
    x, y = _data()
    model = _model().float()
    penalty = L1L2(1e-3, 1e-3)
    reg = reglab.attach(model, {nn.Linear: {"kernel": penalty}})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reglab.schedule(penalty, Linear(1e-3, 1e-1, 10), opt, attribute="l2")
    # (A coefficient that starts at 0, like a warm-up, adds its term once: one recompile.)
    reglab.schedule(penalty, Cosine(1e-2, 1e-3, 10), opt, attribute="l1")

    @torch.compile(fullgraph=True)
    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y) + reg.penalty()

    counters.clear()
    x = x.float()
    for step in range(10):
        loss = loss_fn(x, y)
        kernels = (model[0].weight, model[2].weight)
        with torch.no_grad():
            eager = F.cross_entropy(model(x), y) + sum(penalty(w) for w in kernels)
        torch.testing.assert_close(loss.detach(), eager, rtol=1e-5, atol=0, msg=f"step {step}")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


def test_norm_bound_schedule_per_epoch_with_resume_and_logging() -> None:
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bound = NormBound([model[0].weight], max_norm=1.0)
    handle = reglab.schedule(bound, Step(4.0, 0.5, 1), opt, per="epoch", steps_per_epoch=2)
    assert bound.max_norm == 4.0
    history = fit(
        model,
        (x, y),
        loss=F.cross_entropy,
        optimizer=opt,
        epochs=3,
        batch_size=32,  # 2 steps per epoch
        regularization=bound,
        callbacks=[handle],
        progress=False,
    )
    assert history["schedule/NormBound.max_norm"] == [2.0, 1.0, 0.5]
    state = handle.state_dict()
    assert state == {"steps": 6}
    handle.remove()
    again = reglab.schedule(bound, Step(4.0, 0.5, 1), opt, per="epoch", steps_per_epoch=2)
    again.load_state_dict(state)
    assert bound.max_norm == 0.5


def test_bad_schedules_are_named() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(InvalidParameterError, match=r"L1L2 has several coefficients \(l1, l2\)"):
        reglab.schedule(L1L2(0.1, 0.1), Constant(0.1), opt)
    with pytest.raises(InvalidParameterError, match=r"schedule value at t=0' parameter of L2.l2"):
        reglab.schedule(L2(0.1), lambda t: -1.0, opt)
    with pytest.raises(InvalidParameterError, match=r"'steps_per_epoch' parameter of schedule"):
        reglab.schedule(L2(0.1), Constant(0.1), opt, per="epoch")
    with pytest.raises(InvalidParameterError, match=r"Could not interpret schedule identifier"):
        reglab.schedule(L2(0.1), "exponential", opt)
