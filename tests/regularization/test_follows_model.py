"""Attach follows the model after ``attach`` (issue 24): parameters frozen later, modules
replaced, added or removed later, and several handles on one parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm
from reglab.optim import proximal_l1
from reglab.penalties import L1, L2

LR, C = 0.1, 0.05


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _step(path: str, freeze: bool) -> tuple[nn.Sequential, dict[str, torch.Tensor], float]:
    """One SGD step with an L2 kernel penalty on both Linear layers, ``0.weight`` frozen
    after attach (or not); returns the model, the weights before, and the penalty value."""
    model = _net()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(C))})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if path != "loss":
        reg.fold_into(optimizer, compile=path == "compiled fold")
    if freeze:
        model[0].weight.requires_grad_(False)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    penalty = reg.penalty()
    value = sum(t.item() for t in reg.terms().values())  # folded: evaluated now, before the step
    loss = model(x).square().mean() + penalty
    loss.backward()
    optimizer.step()
    return model, before, value


PATHS = ["loss", "fold", pytest.param("compiled fold", marks=pytest.mark.slow)]


@pytest.mark.parametrize("path", PATHS)
def test_a_parameter_frozen_after_attach_is_not_decayed(path: str) -> None:
    # Issue 24, case 4: fold_into kept decaying a weight frozen after attach (moved by 0.0096).
    model, before, value = _step(path, freeze=True)
    assert torch.equal(model[0].weight, before["0.weight"])
    # The trainable kernel takes its data gradient plus 2·C·w: the same step as without any
    # frozen parameter (a reference run with the data gradient computed separately).
    reference = _net()
    reference[0].weight.requires_grad_(False)
    x = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reference(x).square().mean().backward()
    w = before["2.weight"]
    expected = w - LR * (reference[2].weight.grad + 2 * C * w)
    torch.testing.assert_close(model[2].weight.detach(), expected, rtol=1e-12, atol=1e-14)
    # ... and only the trainable kernel is penalised (Keras penalises trainable weights only).
    assert value == pytest.approx(C * w.square().sum().item(), rel=1e-12)


@pytest.mark.parametrize("path", ["loss", "fold"])
def test_an_unfrozen_parameter_is_penalised_again(path: str) -> None:
    model = _net()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(C))})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if path == "fold":
        reg.fold_into(optimizer)
    model[0].weight.requires_grad_(False)
    reg.penalty()
    assert sorted(reg.terms()) == ["2.kernel"]
    model[0].weight.requires_grad_(True)
    value = reg.penalty()
    expected = C * sum(m.weight.detach().square().sum() for m in (model[0], model[2]))
    total = value if path == "loss" else sum(reg.terms().values())
    assert sorted(reg.terms()) == ["0.kernel", "2.kernel"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)


def test_proximal_l1_leaves_a_frozen_parameter_alone() -> None:
    model = _net()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    proximal_l1(optimizer, model, l1=100.0)  # a threshold of 10: every trainable kernel to 0
    model[0].weight.requires_grad_(False)
    before = model[0].weight.detach().clone()
    model(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    optimizer.step()
    assert torch.equal(model[0].weight, before)
    assert bool((model[2].weight == 0).all())


def test_every_penalised_parameter_frozen_gives_a_zero_penalty() -> None:
    model = _net()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L1(C))})
    model.requires_grad_(False)
    assert reg.penalty().item() == 0.0
    assert reg.terms() == {}


# -- the model's modules changed after attach (case 5) -----------------------------------------


def _attached() -> tuple[nn.Sequential, reglab.Regularization]:
    model = _net()
    return model, reglab.attach(model, {nn.Linear: dict(kernel=L2(C)), "1": dict(activity=L1(C))})


CHANGED = r"^reglab: the model changed after attach: "


def test_a_replaced_module_is_an_error_at_the_next_penalty() -> None:
    # Issue 24, case 5: penalty() went on with the old module's value (0.336996 instead of
    # 0.243812) and the new layer was not regularized.
    model, reg = _attached()
    model[2] = nn.Linear(8, 3).double()
    with pytest.raises(
        reglab.regularization.ModelChangedError,
        match=CHANGED + r"module '2' \(Linear\) was replaced by a new Linear\. .* attach again",
    ):
        reg.penalty()
    with pytest.raises(reglab.regularization.ModelChangedError, match=CHANGED):
        reg.penalty()  # caught and ignored: still an error
    reg.remove()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(C))})
    expected = C * sum(model[i].weight.detach().square().sum() for i in (0, 2))
    assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-12)


def test_a_removed_module_is_an_error_also_without_a_registration() -> None:
    model = nn.Sequential(nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)]))
    reg = reglab.attach(model, {"0.1": dict(kernel=L2(C))})
    del model[0][1]  # ModuleList rebuilds its dict: no registration hook runs
    with pytest.raises(
        reglab.regularization.ModelChangedError,
        match=CHANGED + r"module '0\.1' \(Linear\) was removed",
    ):
        reg.penalty()


def test_an_added_module_that_a_rule_matches_is_an_error_one_that_none_matches_is_not() -> None:
    model, reg = _attached()
    model.probe = nn.Identity()  # no rule matches it
    reg.penalty()
    model.head = nn.Linear(3, 2).double()  # the nn.Linear rule matches it
    with pytest.raises(
        reglab.regularization.ModelChangedError,
        match=CHANGED + r"the rules now reach other modules at head\.weight\.",
    ):
        reg.penalty()
    del model.head
    reg.penalty()  # the model matches the bindings again


@pytest.mark.parametrize("where", ["apply_constraints", "fold"])
def test_the_folded_step_and_the_constraints_check_too(where: str) -> None:
    model = _net()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(C), kernel_constraint=MaxNorm(1.0))})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    reg.fold_into(optimizer)
    model[0] = nn.Linear(4, 8).double()
    run = optimizer.step if where == "fold" else reg.apply_constraints
    with pytest.raises(reglab.regularization.ModelChangedError, match=CHANGED + r"module '0'"):
        run()


def test_replacing_a_parameter_is_followed_not_refused() -> None:
    # load_state_dict(assign=True) and FSDP2 replace parameters, not modules: followed.
    model, reg = _attached()
    state = {k: v.clone() * 2 for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    expected = C * sum(model[i].weight.detach().square().sum() for i in (0, 2))
    assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-12)


# -- two handles on one parameter (case 10) ----------------------------------------------------


def test_a_second_handle_on_a_parameter_warns_naming_it() -> None:
    # Issue 24, case 10: two handles (or two handles folded into one optimizer) doubled the
    # decay silently.
    model = _net()
    first = reglab.attach(model, {"0": dict(kernel=L2(C))})
    with pytest.warns(
        RuntimeWarning,
        match=r"^reglab: parameter\(s\) '0\.weight' already have a weight penalty from another "
        r"attach\(\) handle \(L2\(l2=0\.05\) on '0\.weight'\); this handle adds L2\(l2=0\.05\) on top",
    ):
        second = reglab.attach(model, {nn.Linear: dict(kernel=L2(C))})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    first.fold_into(optimizer)
    second.fold_into(optimizer)
    w = model[0].weight.detach().clone()
    model[0].weight.grad = torch.zeros_like(w)
    model[2].weight.grad = torch.zeros_like(model[2].weight)
    optimizer.step()
    # What the warning says: both apply (4·C·w instead of 2·C·w).
    torch.testing.assert_close(model[0].weight.detach(), w - LR * 4 * C * w)


def test_no_warning_once_the_other_handle_is_removed_or_for_disjoint_handles() -> None:
    import warnings

    model = _net()
    first = reglab.attach(model, {"0": dict(kernel=L2(C))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reglab.attach(model, {"2": dict(kernel=L2(C))})
        first.remove()
        reglab.attach(model, {"0": dict(kernel=L2(C))})
