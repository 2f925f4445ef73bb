"""Population Based Training inside a ModelStack: exact exploit, explore, schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import reglab
from reglab._validation import InvalidParameterError
from reglab.ensembles import ModelStack, PopulationBasedTraining, StackedLinear, copy_member_
from reglab.penalties import L1L2, L2
from reglab.schedules import PiecewiseConstant, registry


def _trained_stack(k: int = 4) -> tuple[ModelStack, torch.optim.Optimizer]:
    torch.manual_seed(0)
    stack = ModelStack(lambda: nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), k=k)
    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    for _ in range(3):
        x = torch.randn(k, 8, 3)  # each member its own data: their states differ
        opt.zero_grad()
        stack(x, per_member=True).square().sum().backward()
        opt.step()
    return stack, opt


def test_exploit_copies_weights_and_optimizer_state_exactly():
    stack, opt = _trained_stack()
    before = {n: p.detach().clone() for n, p in stack.named_parameters()}
    states = {
        n: {s: v.clone() for s, v in opt.state[p].items()} for n, p in stack.named_parameters()
    }
    copy_member_(stack, opt, dst=2, src=0)
    for name, p in stack.named_parameters():
        assert torch.equal(p[2], before[name][0]), name
        for member in (0, 1, 3):  # the others are untouched
            assert torch.equal(p[member], before[name][member]), name
        for key in ("exp_avg", "exp_avg_sq"):
            state = opt.state[p][key]
            assert torch.equal(state[2], states[name][key][0]), (name, key)
            assert torch.equal(state[1], states[name][key][1]), (name, key)
        assert torch.equal(opt.state[p]["step"], states[name]["step"])
    # The copy then trains as the donor does: same data, same update.
    x = torch.randn(8, 3)
    opt.zero_grad()
    stack(x).square().sum().backward()
    opt.step()
    for _, p in stack.named_parameters():
        assert torch.equal(p[2], p[0])


def _population_run(seed: int, epochs: int = 40, interval: int = 4):
    """w ~ train target 1, validate at 0.5: with loss (w-1)² + l2·w² the trained w is
    1/(1+l2), best on validation at l2 = 1 exactly."""
    k = 8
    stack = ModelStack(lambda: nn.Linear(1, 1, bias=False), k=k)
    with torch.no_grad():
        stack.weight.zero_()
    opt = torch.optim.SGD(stack.parameters(), lr=0.1)
    coef = torch.logspace(-3, 2, k)  # 1e-3 .. 1e2
    penalty = L2(coef)
    pbt = PopulationBasedTraining(stack, opt, {"l2": coef}, fraction=0.25, seed=seed)
    x = torch.ones(1, 1)
    for epoch in range(1, epochs + 1):
        for _ in range(5):
            opt.zero_grad()
            loss = (stack(x) - 1.0).square().sum() + penalty(stack.weight)
            loss.backward()
            opt.step()
        if epoch % interval == 0:
            score = -(stack.weight.detach().view(k) - 0.5).square()
            pbt.step(score, epoch)
    return coef, pbt


def test_pbt_moves_the_population_toward_the_known_best_coefficient():
    coef, pbt = _population_run(seed=0)
    start = torch.logspace(-3, 2, 8).log10().abs().mean().item()  # mean |log10(l2 / 1)|
    end = coef.log10().abs().mean().item()
    assert end < 0.5 * start, (start, end, coef)
    assert coef.log10().abs().min().item() < math.log10(1.6), coef
    assert len(pbt.steps_) == 10


def test_schedules_replay_each_members_coefficient_history():
    k = 4
    stack = ModelStack(lambda: nn.Linear(1, 1, bias=False), k=k)
    coef = torch.tensor([1e-3, 1e-2, 1e-1, 1.0])
    pbt = PopulationBasedTraining(stack, None, {"l2": coef}, fraction=0.5, seed=3)
    seen = [coef.clone()]  # seen[e]: the coefficients in force after e epochs
    for epoch in range(1, 7):
        if epoch % 2 == 0:
            pbt.step(torch.randn(k, generator=torch.Generator().manual_seed(epoch)), epoch)
        seen.append(coef.clone())
    schedules = pbt.schedules()
    for member in range(k):
        # a member's schedule ends at the value it trains with now
        assert schedules[member]["l2"](len(seen) - 1) == pytest.approx(float(seen[-1][member]))
    steps3 = pbt.schedules(steps_per_epoch=3)[0]["l2"]
    assert steps3(3 * len(seen)) == schedules[0]["l2"](len(seen))
    # a member never replaced keeps its value throughout
    replaced = {loser for event in pbt.steps_ for loser, _ in event.copies}
    for member in set(range(k)) - replaced:
        assert schedules[member]["l2"].values == [float(coef[member])]


def test_replaced_member_inherits_the_donors_history():
    k = 2
    stack = ModelStack(lambda: nn.Linear(1, 1, bias=False), k=k)
    coef = torch.tensor([0.5, 2.0])
    pbt = PopulationBasedTraining(stack, None, {"l2": coef}, fraction=0.5, factors=(2.0,), seed=0)
    pbt.step([1.0, 0.0], epoch=3)  # member 1 copies member 0 and doubles: 1.0 from epoch 3
    pbt.step([0.0, 1.0], epoch=5)  # member 0 copies member 1 and doubles: 2.0 from epoch 5
    s0, s1 = (s["l2"] for s in pbt.schedules())
    assert [s1(t) for t in range(6)] == [0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    assert [s0(t) for t in range(7)] == [0.5, 0.5, 0.5, 1.0, 1.0, 2.0, 2.0]
    assert s0 == PiecewiseConstant([3, 5], [0.5, 1.0, 2.0])
    assert registry.get(registry.serialize(s0)) == s0


def test_piecewise_constant_rejects_bad_arguments():
    with pytest.raises(InvalidParameterError, match=r"'values' parameter of PiecewiseConstant"):
        PiecewiseConstant([1, 2], [1.0])
    with pytest.raises(InvalidParameterError, match=r"'boundaries' .* non-decreasing"):
        PiecewiseConstant([3, 2], [1.0, 2.0, 3.0])


def test_pbt_rejects_bad_arguments():
    stack = ModelStack(lambda: nn.Linear(1, 1), k=3)
    with pytest.raises(InvalidParameterError, match=r"coefficients\['l2'\].*a \(3,\) tensor"):
        PopulationBasedTraining(stack, None, {"l2": torch.ones(2)})
    with pytest.raises(InvalidParameterError, match=r"'fraction' .* in \(0, 0.5\]"):
        PopulationBasedTraining(stack, None, {"l2": torch.ones(3)}, fraction=0.9)
    pbt = PopulationBasedTraining(stack, None, {"l2": torch.ones(3)})
    with pytest.raises(InvalidParameterError, match=r"needs 3 scores\. Got 2"):
        pbt.step([1.0, 2.0], epoch=1)


def test_pbt_on_an_attached_stack_changes_the_penalty_the_stack_trains_with():
    """The lab's stacked trials: L1L2 rules with (K,) coefficient tensors, reglab.attach."""
    torch.manual_seed(0)
    k = 4
    stack = ModelStack(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), k=k)
    l2 = torch.tensor([1e-4, 1e-3, 1e-2, 1e-1], dtype=torch.float64)
    reg = reglab.attach(
        stack, {StackedLinear: {"kernel": L1L2(torch.zeros(k, dtype=torch.float64), l2)}}
    )
    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    pbt = PopulationBasedTraining(stack, opt, {"l2": l2}, seed=0, interval=2)
    assert [pbt.due(e) for e in range(5)] == [False, False, True, False, True]
    for _epoch in range(1, 3):
        opt.zero_grad()
        (stack(torch.randn(8, 3)).square().sum() + reg.penalty()).backward()
        opt.step()
    event = pbt.step([0.1, 0.2, 0.9, 0.3], epoch=2)
    assert event.copies == [(0, 2)]

    def reference() -> torch.Tensor:  # sum_k l2_k * sum over kernels of w_k**2
        kernels = [stack.get_submodule(n).weight for n in ("0", "2")]
        return sum((l2.float() * w.square().flatten(1).sum(1)).sum() for w in kernels)

    torch.testing.assert_close(reg.penalty().float(), reference().float())
    assert l2[0].item() / l2[2].item() in (pytest.approx(0.8), pytest.approx(1.25))
    reg.remove()
