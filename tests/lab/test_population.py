"""Population Based Training of lab trials (reglab.lab.work.population): the searched axis is
bound to every stack penalty it names, and the stack trains with the engine's values."""

from __future__ import annotations

import pytest

from reglab.lab.search.pbt import initial_population
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.studyfile import parse_study
from reglab.lab.work.population import bind, train_population
from reglab.lab.work.stacking import stack_rules
from reglab.schedules import PiecewiseConstant

ENTRY = {
    "data": {"name": "digits", "subset": 200, "validation": 0.25},
    "model": {"sizes": [64, 12, 12, 10]},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 4},
    "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": {"log": [1e-5, 1.0]}}}}},
}
AXIS = "rules.fc*.kernel.l2"


def _members(k: int = 4) -> tuple[list[dict], list[tuple[TrialConfig, int]]]:
    raw = {"name": "p", "seeds": [0], "search": {"method": "pbt", "members": k}}
    entry = {"name": "L2", "rules": ENTRY["rules"]}
    study = parse_study(
        raw | {key: ENTRY[key] for key in ("data", "model", "train")} | {"grid": [entry]}
    )
    params = initial_population(study.searched.space, k, seed=0)
    return params, [(study.searched.point(p).config, i) for i, p in enumerate(params)]


def test_an_axis_binds_every_layer_its_glob_names() -> None:
    params, members = _members()
    bound = bind(stack_rules([c for c, _ in members]), {AXIS: [p[AXIS] for p in params]})
    assert len(bound[AXIS]) == 3  # fc0, fc1, fc2: one coefficient per member for all three
    assert all(attribute == "l2" for _, attribute in bound[AXIS])
    with pytest.raises(ValueError, match="no penalty coefficient of the stack holds"):
        bind(stack_rules([c for c, _ in members]), {"other": [1.0, 2.0, 3.0, 4.0]})


def test_the_stack_trains_with_the_engine_coefficients() -> None:
    params, members = _members()
    result = train_population(
        members,
        {AXIS: [p[AXIS] for p in params]},
        objective="val_acc",
        interval=1,
        seed=0,
        fraction=0.25,
        factors=(0.8, 1.25),
    )
    assert [s.epoch for s in result.steps] == [1, 2, 3]  # not after the last epoch
    final = [PiecewiseConstant(**s[AXIS])(4) for s in result.schedules]
    held = result.coefficients[AXIS]
    assert len(held) == 3  # fc0, fc1, fc2
    for values in held.values():  # every layer of every member: its schedule's last value
        assert values == pytest.approx(final, rel=1e-12)
    assert len(result.outcomes) == 4
    assert all("val_acc" in o.metrics for o in result.outcomes)
