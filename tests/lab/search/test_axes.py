"""A grid entry's axes as Optuna distributions, suggestions and concrete entries."""

from __future__ import annotations

import re

import optuna
import pytest

from reglab.lab.search import concrete, find_axes, suggest
from reglab.lab.settings.schema import StudyError

ENTRY = {
    "name": "mixed",
    "train": {"lr": {"linear": [0.01, 0.1]}},
    "rules": {
        "fc*": {
            "kernel": {
                "values": [
                    {"class_name": "L2", "config": {"l2": 1e-4}},
                    {"class_name": "L1", "config": {"l1": 1e-5}},
                ]
            },
        },
        "fc0": {"bias": {"class_name": "L2", "config": {"l2": {"log": [1e-5, 1e-1]}}}},
    },
    "model": {"sizes": {"values": [[64, 10], [64, 32, 10]]}},
    "epochs": {"log": [1, 100], "num": 3},
}


def test_axes_kinds_names_and_distributions():
    space = find_axes(ENTRY)
    kinds = {a.name: (a.kind, a.by_index) for a in space.axes}
    assert kinds == {
        "train.lr": ("linear", False),
        "rules.fc*.kernel": ("choice", True),
        "rules.fc0.bias.l2": ("log", False),
        "model.sizes": ("choice", True),
        "epochs": ("choice", False),
    }
    assert space["epochs"].choices == (1.0, 10.0, 100.0)
    d = space.distributions()
    assert d["rules.fc0.bias.l2"] == optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    assert d["train.lr"] == optuna.distributions.FloatDistribution(0.01, 0.1)
    assert d["rules.fc*.kernel"] == optuna.distributions.CategoricalDistribution((0, 1))


def test_suggest_returns_settings_and_concrete_entries():
    space = find_axes(ENTRY)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_kernels = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, space)
        entry = concrete(space, params)
        assert 0.01 <= entry["train"]["lr"] <= 0.1
        assert 1e-5 <= entry["rules"]["fc0"]["bias"]["config"]["l2"] <= 1e-1
        assert entry["model"]["sizes"] in ([64, 10], [64, 32, 10])
        assert entry["epochs"] in (1.0, 10.0, 100.0)
        seen_kernels.add(entry["rules"]["fc*"]["kernel"]["class_name"])
        assert trial.params["rules.fc*.kernel"] in (0, 1)  # stored by index
        study.tell(trial, 0.0)
    assert seen_kernels == {"L1", "L2"}
    assert ENTRY["train"]["lr"] == {"linear": [0.01, 0.1]}  # the entry is not modified


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        ({"log": [0, 1]}, "grid.x: 'log' must be [low, high] with 0 < low < high (got [0, 1])"),
        ({"linear": [1, 1]}, "grid.x: 'linear' must be [low, high] with low < high (got [1, 1])"),
        ({"values": []}, "grid.x: 'values' must be a non-empty list (got [])"),
        ({"log": [1e-3, 1], "num": 0}, "grid.x: 'num' must be an int >= 1 (got 0)"),
    ],
)
def test_bad_axes_name_their_key_path(axis, message):
    with pytest.raises(StudyError, match="^" + re.escape(message)):
        find_axes({"x": axis})
