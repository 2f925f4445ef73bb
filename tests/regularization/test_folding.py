"""``reg.fold_into(optimizer)``: the weight penalties' gradients added inside the optimizer
step train exactly like the penalty in the loss (float64, several steps) for every optimizer,
with GradScaler, gradient accumulation and constraints; the multi-tensor path's op count does
not grow with the number of penalised tensors."""

from __future__ import annotations

import inspect
import warnings
from collections import Counter

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.utils._python_dispatch import TorchDispatchMode

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L1L2, L2, ExpAbs, Orthogonal, ToReference


def net(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    ).to(dtype)


def rules(model: nn.Sequential) -> dict:
    return {
        "0": dict(kernel=L1L2(1e-2, 1e-2), bias=L2(0.05)),
        "2": dict(kernel=Orthogonal(0.1), activity=L1(1e-2)),
        "4": dict(kernel=ToReference(model[4].weight.detach().clone() * 0.5, 0.1)),
        "1": dict(activity=L2(1e-2)),
    }


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05),
}


def _batches(n: int = 6, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(3)
    return [
        (torch.randn(7, 5, generator=g).to(dtype), torch.randn(7, 3, generator=g).to(dtype))
        for _ in range(n)
    ]


def _train(make_optimizer, folded: bool, accumulate: int = 1, constrain: bool = False):
    model = net()
    reg = reglab.attach(model, rules(model))
    if constrain:
        reglab.attach(model, {"2": dict(kernel_constraint=MaxNorm(0.5))}).bind(
            optimizer := make_optimizer(model.parameters())
        )
    else:
        optimizer = make_optimizer(model.parameters())
    if folded:
        reg.fold_into(optimizer)
    batches = _batches(6 * accumulate)
    for step in range(6):
        optimizer.zero_grad()
        for x, y in batches[step * accumulate : (step + 1) * accumulate]:
            loss = (model(x) - y).square().mean() + reg.penalty()
            (loss / accumulate).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()], reg


def _assert_same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_folded_training_equals_the_loss_path(name: str) -> None:
    loss_path, _ = _train(OPTIMIZERS[name], folded=False)
    folded, _ = _train(OPTIMIZERS[name], folded=True)
    _assert_same(folded, loss_path)
    untouched, _ = _train(OPTIMIZERS[name], folded=False)
    assert not torch.equal(untouched[0], net()[0].weight)  # training did move the weights


def test_gradient_accumulation_adds_the_penalty_once_per_step() -> None:
    """Folded == the loss path with (loss + penalty) / k on every micro-batch."""
    loss_path, _ = _train(OPTIMIZERS["adam"], folded=False, accumulate=3)
    folded, _ = _train(OPTIMIZERS["adam"], folded=True, accumulate=3)
    _assert_same(folded, loss_path)


def test_constraints_keep_their_order_gradient_step_projection() -> None:
    loss_path, _ = _train(OPTIMIZERS["sgd-momentum"], folded=False, constrain=True)
    folded, _ = _train(OPTIMIZERS["sgd-momentum"], folded=True, constrain=True)
    _assert_same(folded, loss_path)
    assert float(folded[2].norm(dim=1).max()) <= 0.5 + 1e-9


def test_folded_penalty_holds_activity_terms_and_terms_keep_weight_values() -> None:
    model = net()
    reg = reglab.attach(model, rules(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 5, dtype=torch.float64)
    model(x)
    full = reg.penalty()
    full_terms = reg.terms()
    handle = reg.fold_into(optimizer)
    model(x)
    activity_only = reg.penalty()
    assert float(activity_only) == pytest.approx(
        float(full_terms["1.activity"] + full_terms["2.activity"]), rel=1e-12
    )
    folded_terms = reg.terms()
    assert set(folded_terms) == set(full_terms)
    for k, v in full_terms.items():
        assert float(folded_terms[k]) == pytest.approx(float(v), rel=1e-12)
    handle.remove()  # back to the loss path
    model(x)
    assert float(reg.penalty()) == pytest.approx(float(full), rel=1e-12)


def test_custom_callables_stay_in_the_loss_when_folded() -> None:
    model = net()
    reg = reglab.attach(model, {"0": dict(kernel=lambda w: 0.5 * w.abs().sum())})
    reg.fold_into(torch.optim.SGD(model.parameters(), lr=0.1))
    assert float(reg.penalty()) == pytest.approx(0.5 * float(model[0].weight.abs().sum()))


def test_fold_into_errors() -> None:
    model = net()
    reg = reglab.attach(model, {"0": dict(kernel=L2(0.1))})
    with pytest.raises(reglab.InvalidParameterError, match=r"does not update 0\.weight"):
        reg.fold_into(torch.optim.SGD(model[2].parameters(), lr=0.1))
    with pytest.raises(reglab.InvalidParameterError, match=r"must be a torch\.optim\.Optimizer"):
        reg.fold_into(model)  # type: ignore[arg-type]
    reg.fold_into(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(reglab.InvalidParameterError, match="already folded"):
        reg.fold_into(torch.optim.SGD(model.parameters(), lr=0.1))


def _cpu_fused() -> bool:
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except RuntimeError:  # fused optimizers on the CPU came in torch 2.4
        return False
    return True


CPU_FUSED = _cpu_fused()
FUSED = pytest.param(
    True, marks=pytest.mark.skipif(not CPU_FUSED, reason="fused CPU optimizers need torch >= 2.4")
)


def _amp_train(folded: bool, fused: bool, inf_step: int | None, compile: bool = False):
    model = net(torch.float32)
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L1L2(1e-3, 1e-2))})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    if folded:
        reg.fold_into(optimizer, compile=compile)
    elif compile:  # the reference for the compiled fold: the same compiled update
        optimizer.step = _compiled_update(optimizer)  # type: ignore[method-assign]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for step, (x, y) in enumerate(_batches(5, torch.float32)):
        loss = (model(x) - y).square().mean() + reg.penalty()
        if step == inf_step:
            loss = loss * float("inf")
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return [p.detach().clone() for p in model.parameters()], scaler.get_scale()


@pytest.mark.parametrize("fused", [False, FUSED], ids=["foreach", "fused"])
@pytest.mark.parametrize("inf_step", [None, 2], ids=["finite", "inf-step"])
def test_grad_scaler_neither_scales_twice_nor_applies_on_an_inf_step(fused, inf_step) -> None:
    expected, expected_scale = _amp_train(folded=False, fused=fused, inf_step=inf_step)
    got, scale = _amp_train(folded=True, fused=fused, inf_step=inf_step)
    assert scale == expected_scale
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("inf_step", [None, 2], ids=["finite", "inf-step"])
def test_grad_scaler_with_the_compiled_fold(inf_step) -> None:
    """GradScaler unscales before ``step()`` and skips it on an inf step: the compiled update
    sees unscaled gradients and adds the penalty once (float32)."""
    torch._dynamo.reset()
    expected, expected_scale = _amp_train(False, False, inf_step=inf_step, compile=True)
    got, scale = _amp_train(folded=True, fused=False, inf_step=inf_step, compile=True)
    assert scale == expected_scale
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7)


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name not in ("aten.detach", "aten.alias", "aten.view"):  # no kernel launched
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def _penalty_ops(layers: int, folded: bool, device: str = "cpu") -> Counter[str]:
    model = nn.Sequential(*(nn.Linear(8, 8) for _ in range(layers))).to(device)
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L1L2(1e-3, 1e-2))})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if folded:
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        reg.fold_into(optimizer)
        with _CountOps() as mode:
            reg._weights.add_gradients_()
        return mode.ops
    with _CountOps() as mode:
        reg.penalty().backward()
    return mode.ops


@pytest.mark.parametrize("folded", [False, True], ids=["loss", "folded"])
def test_multi_tensor_ops_do_not_grow_with_the_number_of_tensors(folded: bool) -> None:
    """On accelerators (here the meta device, which takes the same code path as CUDA) the
    step launches as many kernels for 32 penalised tensors as for 4. (On CPU, values use a
    per-tensor dot product, which is faster there.)"""
    few, many = _penalty_ops(4, folded, "meta"), _penalty_ops(32, folded, "meta")
    assert any("_foreach" in k for k in many), many
    assert few == many


def test_elementwise_groups_split_by_coefficient_and_expabs_stays_exact() -> None:
    model = net()
    reg = reglab.attach(
        model,
        {"0": dict(kernel=L2(0.1)), "2": dict(kernel=L2(0.2)), "4": dict(kernel=ExpAbs(0.05))},
    )
    reg.penalty()
    expected = {
        "0.kernel": 0.1 * model[0].weight.detach().square().sum(),
        "2.kernel": 0.2 * model[2].weight.detach().square().sum(),
        "4.kernel": 0.05 * torch.expm1(model[4].weight.detach().abs()).sum(),
    }
    for k, v in reg.terms().items():
        assert float(v) == pytest.approx(float(expected[k]), rel=1e-12)


# -- compile=True: the penalty's gradient compiled into the optimizer's update ------------------


def _compiled_update(optimizer: torch.optim.Optimizer):
    """The reference: the same compiled update, without the penalty (it is in the loss)."""
    update = torch.compile(inspect.unwrap(type(optimizer).step))

    def step() -> None:
        with torch.no_grad():
            update(optimizer)

    return step


def _train_compiled(make_optimizer, folded: bool, zero_in_place: bool = False):
    """Six steps with the update compiled: folded, or the penalty in the loss. With
    ``zero_in_place`` the gradient tensors live from step to step, and no optimizer state
    may share their storage."""
    model = net()
    reg = reglab.attach(model, rules(model))
    optimizer = make_optimizer(model.parameters())
    if folded:
        reg.fold_into(optimizer, compile=True)
        step = optimizer.step
    else:
        step = _compiled_update(optimizer)
    for x, y in _batches(6):
        optimizer.zero_grad(set_to_none=not zero_in_place)
        loss = (model(x) - y).square().mean() + reg.penalty()
        loss.backward()
        step()
        if zero_in_place:
            for p in model.parameters():
                for state in optimizer.state[p].values():
                    assert state.untyped_storage().data_ptr() != p.grad.untyped_storage().data_ptr()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_compiled_fold_equals_the_loss_path_under_the_same_compiled_update(name: str) -> None:
    """Same training as the penalty in the loss, float64, with the optimizer's update compiled
    in both (a compiled update itself differs from eager: torch computes Adam's bias
    corrections in its float32 ``step`` tensor). One graph, no graph break."""
    torch._dynamo.reset()
    counters.clear()
    folded = _train_compiled(OPTIMIZERS[name], folded=True)
    assert counters["stats"]["unique_graphs"] >= 1
    assert not counters["graph_break"], dict(counters["graph_break"])
    loss_path = _train_compiled(OPTIMIZERS[name], folded=False)
    _assert_same(folded, loss_path)


def test_compiled_fold_with_gradients_zeroed_in_place() -> None:
    """``zero_grad(set_to_none=False)``: SGD's first momentum buffer (a clone of the
    gradient) must be a tensor of its own, or zeroing the gradient zeroes it too."""
    torch._dynamo.reset()
    folded = _train_compiled(OPTIMIZERS["sgd-momentum"], folded=True, zero_in_place=True)
    loss_path = _train_compiled(OPTIMIZERS["sgd-momentum"], folded=False, zero_in_place=True)
    _assert_same(folded, loss_path)


def test_compiled_fold_keeps_hooks_schedulers_and_restores_the_step() -> None:
    model = net()
    reg = reglab.attach(model, {"0": dict(kernel=L2(0.1))})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    seen: list[str] = []
    optimizer.register_step_pre_hook(lambda *_: seen.append("pre"))
    optimizer.register_step_post_hook(lambda *_: seen.append("post"))
    handle = reg.fold_into(optimizer, compile=True)
    x = torch.randn(4, 5, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "optimizer.step() has been overridden" warning
        for _ in range(2):
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
            scheduler.step()
    assert seen == ["pre", "post"] * 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    handle.remove()
    assert "step" in vars(optimizer)  # the scheduler's wrapper, as before fold_into
    assert vars(optimizer)["step"]._wrapped_by_lr_sched


def test_compiled_fold_with_a_closure_takes_the_eager_path() -> None:
    expected = _lbfgs(compile=False)
    torch.testing.assert_close(_lbfgs(compile=True), expected, rtol=1e-12, atol=1e-14)


def _lbfgs(compile: bool) -> torch.Tensor:
    model = net()
    reg = reglab.attach(model, {"0": dict(kernel=L1L2(1e-2, 1e-2))})
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    reg.fold_into(optimizer, compile=compile)
    x, y = _batches(1)[0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (model(x) - y).square().mean() + reg.penalty()
        loss.backward()
        return loss

    for _ in range(2):
        optimizer.step(closure)
    return model[0].weight.detach().clone()


def test_compiled_fold_errors() -> None:
    model = net(torch.float32)
    reg = reglab.attach(model, {"0": dict(kernel=L2(0.1))})
    flag = "fused" if CPU_FUSED else "differentiable"
    fused = torch.optim.Adam(model.parameters(), lr=0.1, **{flag: True})
    with pytest.raises(reglab.InvalidParameterError, match=rf"{flag}=True cannot be compiled"):
        reg.fold_into(fused, compile=True)
    with pytest.raises(reglab.InvalidParameterError, match=r"'compile' .* True or False"):
        reg.fold_into(fused, compile="yes")  # type: ignore[arg-type]
    reg.fold_into(fused)  # the eager fold still takes it


def test_a_refused_compiled_fold_leaves_no_hook_behind() -> None:
    # A fold_into(compile=True) refused for a differentiable optimizer registered its step
    # hook before raising: a later fold added the penalty twice.
    model = net()
    reg = reglab.attach(model, {"0": dict(kernel=L2(0.1))})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, differentiable=True)
    with pytest.raises(reglab.InvalidParameterError, match=r"differentiable=True cannot be"):
        reg.fold_into(optimizer, compile=True)
    assert not optimizer._optimizer_step_pre_hooks
    reg.fold_into(optimizer)
    assert len(optimizer._optimizer_step_pre_hooks) == 1  # one penalty add per step
