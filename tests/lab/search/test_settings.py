"""The [search] table: defaults, every key's refusal, the method and pruner registries."""

from __future__ import annotations

import optuna
import pytest

from reglab.lab.search import METHODS, get_method, make_pruner, method_names, parse_search
from reglab.lab.settings.schema import StudyError


def test_defaults_are_todays_grid():
    s = parse_search(None)
    assert (s.method, s.trials, s.pruner, s.objectives, s.seed) == ("grid", None, "none", (), 0)
    assert get_method(s.method).sampler(s) is None


def test_a_full_table_parses_into_a_frozen_object():
    s = parse_search(
        {"method": "tpe", "trials": 30, "pruner": "asha", "objectives": ["val_acc"], "seed": 4}
    )
    assert (s.method, s.trials, s.pruner, s.objectives, s.seed) == (
        "tpe",
        30,
        "asha",
        ("val_acc",),
        4,
    )
    with pytest.raises(AttributeError):
        s.trials = 3  # type: ignore[misc]
    pbt = parse_search({"method": "pbt", "members": 16, "interval": 2})
    assert (pbt.members, pbt.interval) == (16, 2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"method": "bo"},
            "search.method: expected 'grid', 'coarse-to-fine', 'tpe', 'random', "
            "'qmc' or 'pbt' (got 'bo')",
        ),
        ({"method": "tpe"}, "search.trials: required for method 'tpe' (got None)"),
        ({"method": "tpe", "trials": 0}, "search.trials: expected an int >= 1 (got 0)"),
        (
            {"method": "grid", "trials": 5},
            "search.trials: only used by methods 'tpe', 'random' and 'qmc' (got 5)",
        ),
        (
            {"pruner": "sha"},
            "search.pruner: expected 'none', 'median', 'asha' or 'hyperband' (got 'sha')",
        ),
        (
            {"objectives": "val_acc"},
            "search.objectives: expected a list of metric names (got 'val_acc')",
        ),
        (
            {"objectives": ["a", "a"]},
            "search.objectives: expected distinct metric names (got ['a', 'a'])",
        ),
        (
            {"method": "random", "trials": 4, "objectives": ["a", "b"], "pruner": "median"},
            "search.pruner: must be 'none' with several objectives (got 'median')",
        ),
        (
            {"method": "coarse-to-fine", "objectives": ["a", "b"]},
            "search.objectives: method 'coarse-to-fine' takes one objective",
        ),
        ({"method": "pbt", "members": 1}, "search.members: expected an int >= 2 (got 1)"),
        (
            {"method": "tpe", "trials": 3, "interval": 2},
            "search.interval: only used by method 'pbt' (got 2)",
        ),
        ({"method": "pbt", "pruner": "asha"}, "search.pruner: must be 'none' with method 'pbt'"),
        (
            {"method": "pbt", "fraction": 0.6},
            "search.fraction: must be a finite number > 0 and <= 0.5 (got 0.6)",
        ),
        (
            {"method": "pbt", "factors": [0.8, 0]},
            "search.factors[1]: must be a finite number > 0 (got 0.0)",
        ),
        ({"method": "pbt", "factors": []}, "search.factors: expected a list of positive numbers"),
        (
            {"method": "tpe", "trials": 3, "fraction": 0.5},
            "search.fraction: only used by method 'pbt' (got 0.5)",
        ),
        (
            {"method": "coarse-to-fine", "stages": 4},
            "search.stages: expected an int >= 2 <= 3 (got 4)",
        ),
        ({"seed": -1}, "search.seed: expected an int >= 0 (got -1)"),
        (
            {"seeds": 1},
            "search.seeds: unknown key; allowed: batch, factors, fraction, interval, members, "
            "method, objectives, points, pruner, seed, stages, trials (got 1)",
        ),
    ],
)
def test_each_bad_value_is_one_line_naming_key_allowed_and_given(raw, message):
    with pytest.raises(StudyError) as info:
        parse_search(raw)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_every_method_is_registered_once():
    assert sorted(method_names()) == sorted(METHODS)
    samplers = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "qmc": optuna.samplers.QMCSampler,
    }
    for name in METHODS:
        kind = samplers.get(name)
        settings = parse_search({"method": name, **({"trials": 2} if kind else {})})
        sampler = get_method(name).sampler(settings)
        if kind is None:
            assert sampler is None, name
        else:  # tpe and random are rebuilt per trial (see _per_trial)
            built = getattr(sampler, "_build", None)
            assert isinstance(built(0) if built else sampler, kind), name
    with pytest.raises(StudyError, match=r"search.method: expected one of grid"):
        get_method("bo")


def test_pruner_factory_returns_optunas_pruners():
    assert isinstance(make_pruner("none", 10), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("median", 10), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("asha", 10), optuna.pruners.SuccessiveHalvingPruner)
    hyperband = make_pruner("hyperband", 27)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 27
    with pytest.raises(StudyError, match=r"^search.pruner: expected one of none, median, asha, "):
        make_pruner("sha", 10)
