"""The ``[search]`` table of a study file, parsed once into :class:`SearchSettings`.

::

    [search]
    method = "tpe"          # "grid" (default) | "coarse-to-fine" | "tpe" | "random" | "qmc" | "pbt"
    trials = 40             # sampled methods: how many configurations to ask for
    pruner = "asha"         # "none" (default) | "median" | "asha" | "hyperband"
    batch = 8               # sampled methods: candidates asked together, trained as one stack
    objectives = ["val_acc", "zeros"]   # default: the study's validation metric; several:
                                        # a multi-objective search (its Pareto front)
    seed = 0

``batch`` (default 1: one trial at a time) is how many candidates a worker of a sampled
method asks together and trains as one :class:`~reglab.ensembles.ModelStack` (those that
share a stack key; :mod:`reglab.lab.sweep.stacked_search`). ``members`` and ``interval``
are PBT's population size and epochs between exploit/explore steps, ``fraction`` (default
0.25, in (0, 0.5]) the share of members replaced by copies of as many best ones at each step,
``factors`` (default ``[0.8, 1.25]``) the multipliers a copy's coefficients are explored
with (one drawn per coefficient); ``stages`` (2 or 3)
and ``points`` (values per refined stage) are coarse-to-fine's.
Every refusal is one line naming the key, what is allowed, and what was given::

    search.method: expected 'grid', 'coarse-to-fine', 'tpe', 'random', 'qmc' or 'pbt' (got 'bo')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reglab.lab.metrics import OBJECTIVES
from reglab.lab.settings.schema import (
    Table,
    choice,
    fail,
    integer,
    key_path,
    number,
    sequence_of,
    spec,
    string,
)

__all__ = ["METHODS", "PRUNERS", "SAMPLED", "SearchSettings", "parse_search"]

METHODS = ("grid", "coarse-to-fine", "tpe", "random", "qmc", "pbt")
#: Methods that ask an Optuna sampler for ``trials`` configurations.
SAMPLED = ("tpe", "random", "qmc")
PRUNERS = ("none", "median", "asha", "hyperband")


@dataclass(frozen=True)
class SearchSettings(Table):
    """The parsed ``[search]`` table (see the module docstring). ``objectives`` empty means
    the study's validation metric; ``trials`` is None for methods that do not sample."""

    method: str = spec("grid", choice(*METHODS))
    trials: int | None = spec(None, integer(1))
    pruner: str = spec("none", choice(*PRUNERS))
    batch: int = spec(1, integer(1))
    objectives: tuple[str, ...] = spec((), sequence_of(string(), what="a list of metric names"))
    members: int = spec(8, integer(2))
    interval: int = spec(1, integer(1))
    fraction: float = spec(0.25, number(above=0.0, maximum=0.5))
    factors: tuple[float, ...] = spec(
        (0.8, 1.25), sequence_of(number(above=0.0), what="a list of positive numbers")
    )
    stages: int = spec(2, integer(2, 3))
    points: int = spec(5, integer(3))
    seed: int = spec(0, integer(0))

    @classmethod
    def parse(
        cls, raw: Any, path: str = "search", origins: Mapping[str, str] | None = None
    ) -> SearchSettings:
        settings = super().parse(raw, path, origins)
        at = key_path(path, origins)
        given = raw or {}
        if settings.method in SAMPLED and settings.trials is None:
            raise fail(at("trials"), f"required for method {settings.method!r}", None)
        if settings.method not in SAMPLED and "trials" in given:
            raise fail(
                at("trials"), "only used by methods 'tpe', 'random' and 'qmc'", given["trials"]
            )
        if settings.method not in SAMPLED and "batch" in given:
            raise fail(
                at("batch"), "only used by methods 'tpe', 'random' and 'qmc'", given["batch"]
            )
        for key in ("members", "interval", "fraction", "factors"):
            if settings.method != "pbt" and key in given:
                raise fail(at(key), "only used by method 'pbt'", given[key])
        for key in ("stages", "points"):
            if settings.method != "coarse-to-fine" and key in given:
                raise fail(at(key), "only used by method 'coarse-to-fine'", given[key])
        for name in settings.objectives:  # test metrics are reported, never chosen on
            if name.startswith("test_"):
                raise fail(
                    at("objectives"),
                    "test metrics never decide; name a validation metric such as 'val_acc'",
                    list(settings.objectives),
                )
        if len(set(settings.objectives)) != len(settings.objectives):
            raise fail(
                at("objectives"), "expected distinct metric names", list(settings.objectives)
            )
        if len(settings.objectives) > 1:
            if settings.method not in ("grid", *SAMPLED):
                raise fail(
                    at("objectives"),
                    f"method {settings.method!r} takes one objective (several: 'grid', "
                    "'tpe', 'random' or 'qmc')",
                    list(settings.objectives),
                )
            if settings.pruner != "none":
                raise fail(at("pruner"), "must be 'none' with several objectives", settings.pruner)
        if not settings.factors:
            raise fail(at("factors"), "expected a list of positive numbers", [])
        if settings.method == "pbt" and settings.pruner != "none":
            raise fail(
                at("pruner"),
                "must be 'none' with method 'pbt' (PBT replaces members)",
                settings.pruner,
            )
        _check_objective_names(settings.objectives, at("objectives"))
        return settings

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def _check_objective_names(names: tuple[str, ...], at: str) -> None:
    """Each name one of :data:`~reglab.lab.metrics.OBJECTIVES`, and at least one measured on
    validation data: statistics of the weights alone (``zeros``, ``weight_norm``) would choose
    a model that learned nothing."""
    for name in names:
        if name not in OBJECTIVES:
            raise fail(at, f"expected metric names from {', '.join(OBJECTIVES)}", name)
    validation = [n for n, o in OBJECTIVES.items() if o.source == "validation"]
    if names and all(OBJECTIVES[n].source != "validation" for n in names):
        raise fail(at, f"name a validation metric too ({', '.join(validation)})", list(names))


def parse_search(raw: Any, path: str = "search") -> SearchSettings:
    """``raw`` (the decoded ``[search]`` table, or None: today's grid) as :class:`SearchSettings`.

    >>> parse_search({"method": "tpe", "trials": 20}).pruner
    'none'
    >>> parse_search(None).method
    'grid'
    """
    return SearchSettings.parse(raw, path)
