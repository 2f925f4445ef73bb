"""Copies of an attached model (deepcopy, AveragedModel, pickling) never feed the original
handle; train-mode forwards without penalty() keep a bounded number of outputs alive."""

from __future__ import annotations

import copy
import gc
import io
import pickle
import warnings
import weakref

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import reglab
from reglab.penalties import L1, L2


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


RULES = {"1": dict(activity=L1(1.0)), nn.Linear: dict(kernel=L2(0.1))}


@pytest.mark.parametrize(
    "make_copy",
    [
        copy.deepcopy,
        lambda m: AveragedModel(m),
        lambda m: AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(0.99)),
        lambda m: pickle.loads(pickle.dumps(m)),
    ],
    ids=["deepcopy", "AveragedModel-SWA", "AveragedModel-EMA", "pickle"],
)
def test_forwards_of_a_copy_do_not_reach_the_original(make_copy) -> None:
    model = net()
    reg = reglab.attach(model, RULES)
    twin = make_copy(model)
    twin.train()
    weights_only = reg.penalty().item()
    for _ in range(3):  # teacher / EMA passes in train mode with gradients
        twin(torch.randn(6, 4)).sum().backward()
    assert reg.penalty().item() == pytest.approx(weights_only)
    assert "1.activity" not in reg.terms()
    x = torch.randn(6, 4)
    with torch.no_grad():
        expected = weights_only + model[1](model[0](x)).abs().sum().item() / 6
    model(x)  # the original still records
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-6)


def test_a_copy_is_regularized_by_attaching_to_it() -> None:
    model = net()
    reg = reglab.attach(model, RULES)
    twin = copy.deepcopy(model)
    twin_reg = reglab.attach(twin, RULES)
    x = torch.randn(6, 4)
    twin(x)
    assert reg.penalty().item() == pytest.approx(
        0.1
        * sum(float(m.weight.detach().square().sum()) for m in model if isinstance(m, nn.Linear))
    )
    assert "1.activity" in (twin_reg.penalty(), twin_reg.terms())[1]


def test_torch_save_of_an_attached_model_round_trips_without_the_hooks_effect() -> None:
    model = net()
    reg = reglab.attach(model, RULES)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)  # our own, trusted bytes
    loaded(torch.randn(3, 4))
    assert "1.activity" not in (reg.penalty(), reg.terms())[1]


def test_forwards_without_penalty_keep_a_bounded_number_of_outputs() -> None:
    model = net()
    reg = reglab.attach(model, RULES)
    refs: list[weakref.ref] = []
    model[1].register_forward_hook(lambda _m, _i, out: refs.append(weakref.ref(out)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(1000):  # a validation loop that forgot model.eval()
            model(torch.randn(16, 4))
    dropped = [w for w in caught if "oldest are dropped to bound memory" in str(w.message)]
    assert len(dropped) == 1  # one warning, saying why and what to do
    assert "reg.paused()" in str(dropped[0].message)
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= reg.max_pending == 64
    # The next step penalises what is left, and nothing breaks.
    out = model(torch.randn(16, 4))
    (out.sum() + reg.penalty()).backward()


def test_outputs_already_backpropagated_are_skipped_with_a_warning() -> None:
    """A saliency map in train mode (backward without the penalty), then a training step:
    no 'backward through the graph a second time', the stale output is not penalised."""
    model = net()
    reg = reglab.attach(model, {"1": dict(activity=L1(1.0))}, activity_reduction="sum")
    x = torch.randn(5, 4, requires_grad=True)
    model(x).sum().backward()  # saliency: gradient w.r.t. the input
    saliency = x.grad.clone()
    model.zero_grad()
    y = torch.randn(5, 4)
    out = model(y)
    with pytest.warns(RuntimeWarning, match="already backpropagated before penalty"):
        penalty = reg.penalty()
    with torch.no_grad():
        expected = model[1](model[0](y)).abs().sum().item()
    assert penalty.item() == pytest.approx(expected, rel=1e-6)
    (out.sum() + penalty).backward()
    # The saliency map itself was not touched by the penalty's gradient.
    x2 = x.detach().clone().requires_grad_()
    with reg.paused():
        model(x2).sum().backward()
    torch.testing.assert_close(saliency, x2.grad)


def test_paused_records_nothing() -> None:
    model = net()
    reg = reglab.attach(model, {"1": dict(activity=L1(1.0))})
    with reg.paused():
        model(torch.randn(3, 4))
    assert reg.penalty().item() == 0.0
