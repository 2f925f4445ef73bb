"""The chosen configuration as a paste-ready reglab.attach call and a study-file fragment."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab._optional import toml
from reglab.constraints import MaxNorm
from reglab.lab.search import attach_call, concrete, find_axes, study_fragment
from reglab.penalties import L1, L2

RULES = {
    "fc*": {"kernel": {"class_name": "L2", "config": {"l2": 0.000316}}},
    "fc0": {
        "bias": "l1",
        "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 3.0}},
    },
    "act*": {"activity": {"class_name": "L1", "config": {"l1": 1e-5}}, "activity_reduction": "sum"},
}


def test_the_attach_call_evaluates_to_the_same_regularization():
    model = nn.Sequential()
    model.add_module("fc0", nn.Linear(4, 8))
    model.add_module("act0", nn.ReLU())
    model.add_module("fc1", nn.Linear(8, 2))
    code = attach_call(RULES)
    namespace = {"model": model}
    exec(code, namespace)  # the emitted Python runs as pasted
    reg = namespace["regularization"]
    assert isinstance(reg, reglab.Regularization)
    reg.remove()
    # the same rules attached from the objects themselves give the same penalty
    direct = reglab.attach(
        model,
        {
            "fc*": {"kernel": L2(0.000316)},
            "fc0": {"bias": L1(), "kernel_constraint": MaxNorm(3.0)},
            "act*": {"activity": L1(1e-5), "activity_reduction": "sum"},
        },
    )
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    out = model(x)  # records the activity term (kept alive: its graph carries the gradient)
    expected = direct.penalty()
    direct.remove()
    again = {"model": model}
    exec(code, again)
    out = model(x)
    torch.testing.assert_close(again["regularization"].penalty(), expected)
    del out
    assert expected > 0
    assert "penalties.L2(l2=0.000316)" in code
    assert "constraints.MaxNorm(max_value=3.0" in code


def test_the_fragment_parses_back_to_the_same_settings():
    entry = {
        "name": "L2",
        "train": {"lr": {"log": [1e-4, 1e-2]}, "epochs": 10},
        "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": {"log": [1e-6, 1e-1]}}}}},
        "model": {"sizes": [64, 32, 10]},
        "dropout": {"p": 0.2, "layers": ["act0"]},
    }
    space = find_axes(entry)
    best = concrete(space, {"train.lr": 0.00123, "rules.fc*.kernel.l2": 0.000316})
    text = study_fragment(best, name="best L2")
    parsed = toml().loads(text)
    assert parsed == {
        "grid": [{**{k: v for k, v in best.items() if k != "name"}, "name": "best L2"}]
    }
    assert 'rules."fc*".kernel = { class_name = "L2", config = { l2 = 0.000316 } }' in text
    assert toml().loads(study_fragment(best))["grid"][0]["name"] == "L2"


def test_values_toml_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="finite numbers"):
        study_fragment({"x": float("nan")})
