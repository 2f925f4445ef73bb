"""``method = "pbt"``: Population Based Training inside one stack.

One trial trains ``members`` configurations as one :class:`~reglab.ensembles.ModelStack`.
Every ``interval`` epochs the engine, :class:`reglab.ensembles.PopulationBasedTraining`,
replaces the worst ``fraction`` of the members (default a quarter) by copies of as many best
ones (weights and optimizer state) and multiplies their coefficients by one of ``factors``
(default 0.8 or 1.25; both ``[search]`` settings). This module draws the
initial population: each member's value of every ``{log = [a, b]}`` axis log-uniform, of
every ``{linear = [a, b]}`` axis uniform (seeded). Choice axes cannot differ inside a stack
(a member's copy takes its donor's weights, not its architecture or regularizer kind), so a
PBT entry's ``{values = [...]}`` axes must hold one value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search.axes import SearchSpace
from reglab.lab.search.export import attach_call
from reglab.lab.search.settings import SearchSettings
from reglab.lab.settings.schema import StudyError, fail

__all__ = [
    "PBT",
    "PBT_OBJECTIVES",
    "check_population",
    "initial_population",
    "schedule_call",
    "schedule_entries",
    "schedule_target",
]

#: The objectives PBT ranks members on: what a stack logs per member after every epoch.
PBT_OBJECTIVES = ("val_acc", "val_loss")


@register
class PBT(SearchMethod):
    """The population trains as one stack; no sampler."""

    name = "pbt"
    stacks_population = True


def initial_population(space: SearchSpace, members: int, seed: int) -> list[dict[str, Any]]:
    """``members`` settings (axis name -> value), coefficients drawn log-uniform / uniform.

    >>> from reglab.lab.search.axes import find_axes
    >>> space = find_axes({"l2": {"log": [1e-5, 1e-1]}})
    >>> population = initial_population(space, 3, seed=0)
    >>> len(population), all(1e-5 <= p["l2"] <= 1e-1 for p in population)
    (3, True)
    """
    rng = np.random.default_rng(seed)
    population: list[dict[str, Any]] = [{} for _ in range(members)]
    for a in space.axes:
        if a.kind == "choice":
            if len(a.choices) != 1:
                raise StudyError(
                    f"{a.name}: method 'pbt' trains one stack, whose members share everything "
                    f"but coefficients; a choice axis must hold one value (got {len(a.choices)})"
                )
            draws = [a.choices[0]] * members
        elif a.kind == "log":
            draws = np.exp(rng.uniform(np.log(a.low), np.log(a.high), members)).tolist()
        else:
            draws = rng.uniform(a.low, a.high, members).tolist()
        for member, value in zip(population, draws, strict=True):
            member[a.name] = value
    return population


def schedule_target(space: SearchSpace, name: str) -> tuple[str, str]:
    """``("rules.<glob>.<kind>", "l1" | "l2")``: the schedule target and attribute of the
    coefficient axis ``name`` (``rules.fc*.kernel.l2``), as ``[[grid]] schedules`` name it."""
    keys = space[name].keys
    return ".".join(keys[:3]), keys[-1]


def check_population(space: SearchSpace, settings: SearchSettings, at: str) -> None:
    """What ``method = "pbt"`` needs of the searched entry, as one-line errors naming the key:
    a continuous axis, every continuous axis a rule penalty's ``l1`` / ``l2`` coefficient (the
    stack's per-member tensors; the learning rate, sizes, ... are shared by a stack), choice
    axes of one value, and an objective the stack logs each epoch."""
    continuous = [a for a in space.axes if a.kind != "choice"]
    if not continuous:
        raise fail(
            f"{at}.method",
            "'pbt' perturbs coefficients: give a rule's l1 / l2 a {log = [a, b]} range",
            settings.method,
        )
    for a in continuous:
        keys = a.keys
        if not (len(keys) == 5 and keys[0] == "rules" and keys[3] == "config"
                and keys[4] in ("l1", "l2")):  # fmt: skip
            raise fail(
                f"{at}.method",
                f"'pbt' perturbs penalty coefficients (rules.<glob>.<kind> = {{ class_name = "
                f"..., config = {{ l2 = {{ log = [a, b] }} }} }}); axis {a.name!r} is not one "
                "(the members of a stack share everything else)",
                settings.method,
            )
    for a in space.axes:
        if a.kind == "choice" and len(a.choices) != 1:
            raise fail(
                f"{at}.method",
                f"'pbt' trains one stack; choice axis {a.name!r} must hold one value "
                f"(got {len(a.choices)})",
                settings.method,
            )
    objective = settings.objectives[0] if settings.objectives else "val_acc"
    if objective not in PBT_OBJECTIVES:
        raise fail(
            f"{at}.objectives",
            f"method 'pbt' ranks members on {' or '.join(PBT_OBJECTIVES)} (logged per member "
            "each epoch)",
            list(settings.objectives),
        )


def schedule_entries(
    space: SearchSpace, schedules: Mapping[str, Mapping[str, Sequence[Any]]]
) -> list[dict[str, Any]]:
    """A grid entry's ``schedules = [...]`` replaying one member: ``schedules`` maps each
    coefficient axis to ``{"boundaries": [epochs], "values": [...]}`` (what
    :meth:`reglab.ensembles.PopulationBasedTraining.schedules` returns, per epoch).

    >>> from reglab.lab.search.axes import find_axes
    >>> space = find_axes({"rules": {"fc*": {"kernel": {"class_name": "L2",
    ...     "config": {"l2": {"log": [1e-5, 1e-1]}}}}}})
    >>> entry, = schedule_entries(space, {"rules.fc*.kernel.l2": {"boundaries": [2],
    ...     "values": [1e-3, 8e-4]}})
    >>> entry["target"], entry["attribute"], entry["per"], entry["schedule"]["class_name"]
    ('rules.fc*.kernel', 'l2', 'epoch', 'piecewise_constant')
    """
    out = []
    for name, config in schedules.items():
        target, attribute = schedule_target(space, name)
        schedule = {
            "class_name": "piecewise_constant",
            "config": {
                "boundaries": [int(b) for b in config["boundaries"]],
                "values": [float(v) for v in config["values"]],
            },
        }
        out.append({"target": target, "attribute": attribute, "per": "epoch", "schedule": schedule})
    return out


def schedule_call(
    rules: Mapping[str, Mapping[str, Any]],
    entries: Sequence[Mapping[str, Any]],
    model: str = "model",
    optimizer: str = "optimizer",
) -> str:
    """Python that attaches ``rules`` (a concrete entry's table) and replays ``entries``
    (:func:`schedule_entries`) with :func:`reglab.schedule`, ``t`` counting epochs.

    >>> text = schedule_call({"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 1e-3}}}},
    ...     [{"target": "rules.fc*.kernel", "attribute": "l2", "per": "epoch", "schedule":
    ...      {"class_name": "piecewise_constant", "config": {"boundaries": [2],
    ...      "values": [1e-3, 8e-4]}}}])
    >>> print(text.splitlines()[5])
        'fc*': {'kernel': penalties.L2(l2=0.001)},
    >>> "reglab.schedule(rules['fc*']['kernel'], PiecewiseConstant(boundaries=[2]" in text
    True
    """
    attach = attach_call(rules, model).splitlines()
    opening = attach.index(f"regularization = reglab.attach({model}, {{")
    lines = [
        *attach[: opening - 1],
        "from reglab.schedules import PiecewiseConstant",
        "",
        "rules = {",
        *attach[opening + 1 : -1],
        "}",
        f"regularization = reglab.attach({model}, rules)",
        "",
        "# Population Based Training's coefficient schedule (t counts epochs): pass the",
        f"# optimizer that trains {model}, and the number of its steps per epoch",
        "steps_per_epoch = len(train_loader)",
        "schedules = [",
    ]
    for entry in entries:
        _, glob, kind = entry["target"].split(".", 2)
        config = entry["schedule"]["config"]
        lines.append(
            f"    reglab.schedule(rules[{glob!r}][{kind!r}], "
            f"PiecewiseConstant(boundaries={config['boundaries']!r}, "
            f"values={config['values']!r}), {optimizer}, attribute={entry['attribute']!r}, "
            "per='epoch', steps_per_epoch=steps_per_epoch),"
        )
    lines += ["]", "# fit(model, ..., callbacks=schedules) logs schedule/<name> each epoch"]
    return "\n".join(lines)
