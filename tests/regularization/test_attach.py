"""attach(): what gets regularized, when outputs are recorded, errors, constraints."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import reglab
from reglab import InvalidParameterError
from reglab.constraints import MaxNorm, NonNeg
from reglab.penalties import L1, L2, TemporalDifference


class Triple(nn.Module):
    """Output differs from input, so a penalty on the input would give another number."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * x + 1.0


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_activity_is_taken_from_the_output_not_the_input() -> None:
    model = nn.Sequential(Triple())
    reg = reglab.attach(model, {"0": dict(activity=L1(0.01))}, activity_reduction="sum")
    x = torch.randn(5, 2)
    model(x)
    assert reg.penalty().item() == pytest.approx(0.01 * (3 * x + 1).abs().sum().item())


@pytest.mark.parametrize(("reduction", "divisor"), [("batch", 5), ("sum", 1), ("mean", 5 * 8)])
def test_activity_reductions(reduction: str, divisor: int) -> None:
    model = net()
    reg = reglab.attach(model, {"1": dict(activity=L2(0.1))}, activity_reduction=reduction)
    x = torch.randn(5, 4)
    with torch.no_grad():  # the reference forward must not be recorded itself
        hidden = model[1](model[0](x))
    model(x)
    assert reg.penalty().item() == pytest.approx(0.1 * hidden.square().sum().item() / divisor)


def test_per_rule_reduction_overrides_and_batch_means_are_not_divided() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    reg = reglab.attach(
        model,
        {
            "0": dict(activity=L2(1.0), activity_reduction="sum"),
            "1": dict(activity=TemporalDifference(2.0, time_dim=1)),
        },
    )
    x = torch.randn(4, 6, 3)  # (B, T, F): TAR along dim 1
    with torch.no_grad():
        pre = model[0](x)
        post = model[1](pre)
    model(x)
    terms = {k: v.item() for k, v in (reg.penalty(), reg.terms())[1].items()}
    assert terms["0.activity"] == pytest.approx(pre.square().sum().item(), rel=1e-6)
    assert terms["1.activity"] == pytest.approx(
        2.0 * (post[:, 1:] - post[:, :-1]).square().mean().item(), rel=1e-6
    )


def test_eval_mode_and_no_grad_record_nothing() -> None:
    model = net()
    reg = reglab.attach(model, {"1": dict(activity=L1(1.0))})
    model.eval()
    model(torch.randn(5, 4))
    model.train()
    with torch.no_grad():
        model(torch.randn(5, 4))
    assert reg.penalty().item() == 0.0
    model(torch.randn(5, 4))
    assert reg.penalty().item() > 0.0


def test_recorded_outputs_are_released_by_penalty() -> None:
    model = net()
    reg = reglab.attach(model, {"1": dict(activity=L1(1e-3)), nn.Linear: dict(kernel=L2(1e-3))})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    refs = []
    model[1].register_forward_hook(lambda _m, _i, o: refs.append(weakref.ref(o)))
    for _ in range(50):
        out = model(torch.randn(16, 4))
        loss = out.pow(2).mean() + reg.penalty()
        assert reg.penalty().item() == pytest.approx(
            1e-3
            * sum(  # weights only: consumed
                float(m.weight.detach().square().sum()) for m in model if isinstance(m, nn.Linear)
            )
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    del out, loss
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


def test_module_called_twice_in_one_step_counts_twice() -> None:
    layer = nn.Linear(3, 3)
    reg = reglab.attach(layer, {"": dict(activity=L1(1.0))}, activity_reduction="sum")
    a, b = layer(torch.randn(2, 3)), layer(torch.randn(2, 3))
    assert reg.penalty().item() == pytest.approx((a.abs().sum() + b.abs().sum()).item())


def test_kernels_cover_lstm_weights_and_biases_are_never_penalised_unless_asked() -> None:
    model = nn.LSTM(3, 4, num_layers=2)
    reg = reglab.attach(model, {"": dict(kernel=L2(1.0))})
    names = [b.param_name for b in reg.bindings.weights]
    assert names == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    expected = sum(p.square().sum() for n, p in model.named_parameters() if n.startswith("weight"))
    assert reg.penalty().item() == pytest.approx(expected.item())
    assert list(reg.terms()) == ["kernel"]
    reg = reglab.attach(model, {"": dict(bias=L1(1.0))})
    assert [b.param_name for b in reg.bindings.weights][:2] == ["bias_ih_l0", "bias_hh_l0"]


def test_frozen_parameters_are_skipped() -> None:
    model = net()
    model[0].weight.requires_grad_(False)
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1.0))})
    assert [b.param_name for b in reg.bindings.weights] == ["2.weight"]


def test_type_rules_and_glob_rules() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    reg = reglab.attach(model, {nn.Conv2d: dict(kernel="l2"), "3": dict(kernel="l1")})
    assert [(b.param_name, type(b.penalty).__name__) for b in reg.bindings.weights] == [
        ("0.weight", "L2"),
        ("3.weight", "L1"),
    ]


def test_star_crosses_dots_and_re_prefix_matches_one_segment() -> None:
    from tests.integration.test_transformers import bert

    model = bert()
    glob = reglab.attach(model, {"bert.encoder.layer.*.output.dense": dict(kernel=L2(1.0))})
    assert [b.param_name for b in glob.bindings.weights] == [
        f"bert.encoder.layer.{i}.{part}output.dense.weight"
        for i in range(2)
        for part in ("attention.", "")
    ]
    glob.remove()
    regex = reglab.attach(
        model, {r"re:bert\.encoder\.layer\.[^.]+\.output\.dense": dict(kernel=L2(1.0))}
    )
    assert [b.param_name for b in regex.bindings.weights] == [
        f"bert.encoder.layer.{i}.output.dense.weight" for i in range(2)
    ]
    regex.remove()
    with pytest.raises(InvalidParameterError, match=r"The attach rule 're:\(' is not a valid"):
        reglab.attach(model, {"re:(": dict(kernel=L2(1.0))})


def test_terms_sum_to_the_penalty() -> None:
    model = net()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1e-2)), "1": dict(activity=L1(1e-2))})
    model(torch.randn(5, 4))
    total = reg.penalty()
    terms = reg.terms()
    assert set(terms) == {"0.kernel", "2.kernel", "1.activity"}
    assert sum(terms.values()).item() == pytest.approx(total.item())
    assert all(not t.requires_grad for t in terms.values())


def test_tied_parameter_reached_twice_by_one_rule_is_penalised_once() -> None:
    a, b = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1.0))})
    assert reg.penalty().item() == pytest.approx(a.weight.square().sum().item())


def test_constraints_apply_and_bind() -> None:
    model = net()
    reg = reglab.attach(
        model,
        {nn.Linear: dict(kernel_constraint=MaxNorm(0.1)), "2": dict(bias_constraint=NonNeg())},
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    handle = reg.bind(optimizer)
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    for layer in (model[0], model[2]):
        assert layer.weight.norm(dim=1).max().item() <= 0.1 + 1e-6
    assert model[2].bias.min().item() >= 0.0
    reg.remove()  # also unhooks the optimizer
    with torch.no_grad():
        model[0].weight.mul_(100)
    optimizer.step()
    assert model[0].weight.norm(dim=1).max().item() > 0.1
    handle.remove()  # removing twice is harmless


def test_remove_detaches_hooks_and_context_manager() -> None:
    model = net()
    with reglab.attach(model, {"1": dict(activity=L1(1.0))}) as reg:
        pass
    model(torch.randn(2, 4))
    assert reg.penalty().item() == 0.0
    assert not model[1]._forward_hooks


def test_custom_callable_penalty_takes_the_autograd_path() -> None:
    layer = nn.Linear(3, 2)
    reg = reglab.attach(layer, {"": dict(kernel=lambda w: w.abs().max())})
    reg.penalty().backward()
    assert layer.weight.grad.abs().sum().item() == pytest.approx(1.0)


def test_errors_name_what_is_wrong() -> None:
    model = net()
    with pytest.raises(
        InvalidParameterError,
        match=r"Rule 'encoder\.\*' matches no module of Sequential\. Available module names: '', '0', '1', '2'\.",
    ):
        reglab.attach(model, {"encoder.*": dict(kernel=L2())})
    with pytest.raises(
        InvalidParameterError,
        match=r"Rules Linear and '0' both give parameter '0\.weight' a 'kernel'",
    ):
        reglab.attach(model, {nn.Linear: dict(kernel=L2()), "0": dict(kernel=L1())})
    with pytest.raises(
        InvalidParameterError, match=r"Rules '\*' and ReLU both give module '1' a 'activity'"
    ):
        reglab.attach(model, {"*": dict(activity=L1()), nn.ReLU: dict(activity=L2())})
    with pytest.raises(
        InvalidParameterError,
        match=r"Rule '1' asks for 'kernel' but none of the modules it matches \('1'\) has trainable weight",
    ):
        reglab.attach(model, {"1": dict(kernel=L2())})
    with pytest.raises(
        InvalidParameterError,
        match=r"The rule for '0' has unknown key\(s\) \['kernel_regularizer'\]",
    ):
        reglab.attach(model, {"0": dict(kernel_regularizer=L2())})
    with pytest.raises(
        InvalidParameterError, match=r"Rule keys of attach must be a glob pattern .* Got 3 instead"
    ):
        reglab.attach(model, {3: dict(kernel=L2())})
    with pytest.raises(
        InvalidParameterError,
        match=r"'activity_reduction' parameter of attach must be one of 'batch', 'sum', 'mean'\. Got 'avg'",
    ):
        reglab.attach(model, {"0": dict(kernel=L2())}, activity_reduction="avg")
    with pytest.raises(InvalidParameterError, match=r"Could not interpret penalty identifier 'l5'"):
        reglab.attach(model, {"0": dict(kernel="l5")})
    with pytest.raises(
        InvalidParameterError, match=r"The 'rules' parameter of attach must be a non-empty dict"
    ):
        reglab.attach(model, {})
