"""The fused activity path (gradient added in the output's own backward, no graph kept by the
record) equals the token path (``fused_activity = False``, autograd through the penalty) in
value and gradient, wherever the loss puts the penalty; where it cannot apply it falls back."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import reglab
from reglab.penalties import L1, L1L2, L2, ExpAbs, KLSparsity, TemporalDifference
from reglab.regularization.activity import Record
from reglab.regularization.fused_activity import RELU, Fused

ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
PENALTIES = {
    "l1": L1(0.3),
    "l2": L2(0.2),
    "l1l2": L1L2(0.1, 0.2),
    "exp_abs": ExpAbs(0.05),
    "kl": KLSparsity(0.2, 0.7),
    "tar": TemporalDifference(0.4, time_dim=1),
}


def _net(act: str) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), ACTS[act](), nn.Linear(7, 3)).double()


def _step(model: nn.Module, penalty, *, fused: bool, scale: float = 1.0, accumulate: int = 1):
    """One optimizer step's gradients (loss scaled, micro-batches accumulated) and the values
    of ``penalty()`` and ``terms()`` of each micro-batch."""
    reg = reglab.attach(model, {"1": dict(activity=penalty)})
    reg.fused_activity = fused
    torch.manual_seed(1)
    values = []
    for _ in range(accumulate):
        out = model(torch.randn(4, 6, 5, dtype=torch.double))
        total = reg.penalty()
        values += [float(total.detach()), *(float(v) for v in reg.terms().values())]
        ((out.square().mean() + total) * scale / accumulate).backward()
    kinds = {type(r) for r in reg._pending}
    reg.remove()
    return values, [p.grad.clone() for p in model.parameters()], kinds


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("name", list(PENALTIES))
def test_fused_equals_token_path(act: str, name: str) -> None:
    if name == "kl" and act != "sigmoid":
        pytest.skip("KLSparsity needs activations in [0, 1]")
    expected = _step(_net(act), PENALTIES[name], fused=False, scale=8.0, accumulate=2)
    got = _step(_net(act), PENALTIES[name], fused=True, scale=8.0, accumulate=2)
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    for g, e in zip(got[1], expected[1], strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_relu_l1_keeps_nothing_of_the_output_and_other_records_are_fused() -> None:
    model = _net("relu")
    reg = reglab.attach(model, {"1": dict(activity=L1(0.1)), "0": dict(activity=L2(0.1))})
    outputs = []
    model[0].register_forward_hook(lambda _m, _i, out: outputs.append(out))
    model(torch.randn(4, 5, dtype=torch.double))
    records = {r.binding.module_name: r for r in reg._pending}
    assert all(isinstance(r, Fused) for r in records.values())
    assert records["1"].kind == RELU
    assert records["1"].data is None  # ReLU's mask does it
    assert records["0"].data.data_ptr() == outputs[0].data_ptr()  # an alias, not a copy


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["l1", "l2", "tar"])
def test_penalty_backpropagated_alone_or_outside_the_loss(name: str) -> None:
    """``reg.penalty().backward()`` alone, and a penalised output that the loss never uses,
    still get the penalty's gradient."""
    grads = []
    for fused in (False, True):
        model = _net("gelu")
        reg = reglab.attach(model, {"1": dict(activity=PENALTIES[name])})
        reg.fused_activity = fused
        side = model[1](model[0](torch.randn(4, 6, 5, dtype=torch.double)))  # kept, unused
        reg.penalty().backward()
        del side
        grads.append(_grads(model[0]))
    assert float(grads[0][0].abs().sum()) > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-14)


class Residual(nn.Module):
    """x + fc(x): nothing saves fc's output, so its Python object dies after the forward
    while the graph downstream lives (the fused record then adds its gradient by hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.fc, self.out = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        return self.out(h + self.fc(h))


@pytest.mark.parametrize("name", ["l1", "l2", "l1l2", "tar"])
def test_output_nothing_saves_gets_its_gradient_through_the_hook(name: str) -> None:
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = Residual().double()
        reg = reglab.attach(model, {"fc": dict(activity=PENALTIES[name])})
        reg.fused_activity = fused
        out = model(torch.randn(4, 3, 5, dtype=torch.double))
        records = list(reg._pending)
        penalty = reg.penalty()
        if fused:
            assert isinstance(records[0], Fused)
            assert not records[0].connected  # its output died: the hook adds the gradient
        (out.square().sum() + 3.0 * penalty).backward()
        results.append((float(penalty.detach()), _grads(model)))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    for g, e in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_retained_graph_backpropagated_again_without_the_penalty_adds_it_once() -> None:
    results = []
    for fused in (False, True):
        model = _net("gelu")
        reg = reglab.attach(model, {"1": dict(activity=L2(0.5))})
        reg.fused_activity = fused
        out = model(torch.randn(4, 5, dtype=torch.double))
        (out.sum() + reg.penalty()).backward(retain_graph=True)
        out.square().sum().backward()  # an auxiliary loss on the same forward
        results.append(_grads(model))
    for g, e in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_in_place_change_after_the_record_is_an_error_naming_the_module() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    reg = reglab.attach(model, {"0": dict(activity=L2(0.1))})
    out = model(torch.randn(3, 4))
    with pytest.raises(RuntimeError, match=r"output of '0' \(Linear\) was modified in place"):
        (out.sum() + reg.penalty()).backward()


def test_double_backward_l1_exact_l2_warns_and_token_path_is_exact() -> None:
    """Gradient-norm penalty through the model (create_graph=True)."""

    def run(penalty, fused: bool) -> list[torch.Tensor]:
        model = _net("gelu")
        reg = reglab.attach(model, {"1": dict(activity=penalty)})
        reg.fused_activity = fused
        out = model(torch.randn(4, 5, dtype=torch.double))
        loss = out.square().mean() + reg.penalty()
        grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
        sum(g.square().sum() for g in grads).backward()
        return _grads(model)

    for g, e in zip(run(L1(0.3), True), run(L1(0.3), False), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    with pytest.warns(RuntimeWarning, match="fused_activity = False"):
        run(L2(0.3), True)


def test_saved_tensor_hooks_fall_back_to_the_token_path() -> None:
    """Under non-reentrant checkpointing the checkpoint decides what is kept: tokens."""
    model = _net("gelu")
    reg = reglab.attach(model, {"1": dict(activity=L2(0.1))})

    def body(x: torch.Tensor) -> torch.Tensor:
        return model[1](model[0](x))

    checkpoint(body, torch.randn(3, 5, dtype=torch.double), use_reentrant=False)
    assert [type(r) for r in reg._pending] == [Record]
    with torch.autograd.graph.save_on_cpu():
        model(torch.randn(3, 5, dtype=torch.double))
    assert [type(r) for r in reg._pending] == [Record, Record]
    model(torch.randn(3, 5, dtype=torch.double))
    assert type(reg._pending[-1]) is Fused


def test_custom_callable_keeps_the_token_path() -> None:
    model = _net("gelu")
    reg = reglab.attach(model, {"1": dict(activity=lambda h: h.square().sum())})
    model(torch.randn(3, 5, dtype=torch.double))
    assert [type(r) for r in reg._pending] == [Record]


def test_copy_of_a_model_with_fused_records_trains_alone() -> None:
    model = _net("relu")
    reg = reglab.attach(model, {"1": dict(activity=L1(1.0))})
    twin = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin(torch.randn(3, 5, dtype=torch.double)).sum().backward()
    assert reg.penalty().item() == 0.0


def test_a_forward_whose_output_was_dropped_is_valued_but_warns_it_gets_no_gradient() -> None:
    """Its graph is gone (nothing kept it): its value is in penalty(), no gradient can be."""
    model = _net("gelu")
    reg = reglab.attach(model, {"1": dict(activity=L1(1.0))}, activity_reduction="sum")
    dropped, x = torch.randn(4, 5, dtype=torch.double), torch.randn(4, 5, dtype=torch.double)
    model(dropped)  # a forward whose output nobody keeps
    out = model(x)
    with pytest.warns(RuntimeWarning, match="1 recorded outputs were freed"):
        penalty = reg.penalty()
    with torch.no_grad():
        codes = [model[1](model[0](t)) for t in (dropped, x)]
    assert penalty.item() == pytest.approx(sum(c.abs().sum().item() for c in codes), rel=1e-12)
    (out.sum() + penalty).backward()
    got = _grads(model)
    model.zero_grad()
    with reg.paused():
        h = model[1](model[0](x))
        (model[2](h).sum() + h.abs().sum()).backward()  # x's penalty only
    for g, e in zip(got, _grads(model), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)
