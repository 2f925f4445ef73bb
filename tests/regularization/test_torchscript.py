"""TorchScript never calls Python forward hooks: activity rules on traced or scripted
modules, and tracing or scripting a model with activity rules, are errors that say why
(issue 24, case 6: the penalty used to be 0.0 silently). Weight rules keep working."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import reglab
from reglab._validation import InvalidParameterError
from reglab.penalties import L1, L2


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _traced(model: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(model, torch.randn(3, 4))


@pytest.mark.parametrize("key", ["1", ""], ids=["submodule", "root"])
def test_activity_rule_on_a_traced_module_is_refused(key: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"TorchScript module .*silently be 0"):
        reglab.attach(_traced(_net()), {key: dict(activity=L1(1.0))})


def test_activity_rule_on_a_scripted_module_is_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(_net())
    with pytest.raises(InvalidParameterError, match=r"RecursiveScriptModule.*never calls"):
        reglab.attach(scripted, {"1": dict(activity=L1(1.0))})


def test_tracing_a_model_with_activity_rules_is_refused() -> None:
    model = _net()
    reglab.attach(model, {"1": dict(activity=L1(1.0))})
    with pytest.raises(InvalidParameterError, match=r"'1' \(ReLU\).*torch\.jit\.trace"):
        _traced(model)


def test_scripting_a_model_with_activity_rules_is_refused() -> None:
    model = _net()
    reglab.attach(model, {"1": dict(activity=L1(1.0))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidParameterError, match="cannot be scripted"):
            torch.jit.script(model)


def test_after_remove_or_on_a_copy_tracing_works() -> None:
    model = _net()
    reg = reglab.attach(model, {"1": dict(activity=L1(1.0))})
    x = torch.randn(3, 4)
    torch.testing.assert_close(_traced(copy.deepcopy(model))(x), model(x))
    reg.remove()
    torch.testing.assert_close(_traced(model)(x), model(x))


def test_weight_rules_on_a_traced_model_still_work() -> None:
    model = _net()
    traced = _traced(model)
    reg = reglab.attach(traced, {"0": dict(kernel=L2(1.0))})
    expected = float(model[0].weight.detach().square().sum())
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-6)
