"""The sweep's objective: the one named validation metric a study chooses on.

Every place that tells Optuna a value, or picks a configuration, asks this module:

* :func:`study_objective` — the study's :class:`~reglab.lab.metrics.Objective`: the default of
  its trial family (:data:`~reglab.lab.metrics.FAMILY_OBJECTIVES`: ``val_acc`` for
  classifiers, ``val_recon``, ``val_mse`` or ``val_ppl`` for the others), or one named
  (:func:`named_objective`, which refuses test metrics: ``[search] objectives`` asks it);
* :func:`optuna_value` — what a finished trial's Optuna record holds: the metric itself (the
  Optuna study's direction is the objective's), or the worst value (``-inf`` when maximizing,
  ``inf`` when minimizing) for a trial that did not measure it (a study with a single
  configuration and no validation split has nothing to choose);
* :func:`name_metric` — ``study.set_metric_names([objective.name])``, so Optuna's dashboard
  and ``trials_dataframe`` say ``val_acc``, not "Objective 0";
* :func:`chosen` — the configuration with the best seed-mean objective in a report's summary,
  and :func:`choice_line` — that choice in words, with its test metric reported once.

Test metrics are recorded and reported for every configuration, and are read by nothing here:
permuting the test labels changes no value this module returns (``tests/lab/test_selection.py``).

>>> from reglab.lab.metrics import OBJECTIVES
>>> acc = OBJECTIVES["val_acc"]
>>> optuna_value({"val_acc": 0.97, "test_acc": 0.5}, acc)
0.97
>>> optuna_value({"test_acc": 0.5}, acc)
-inf
>>> chosen([{"label": "a", "metrics": {"val_acc": (0.9, 0.0)}},
...         {"label": "b", "metrics": {"val_acc": (0.95, 0.01)}}], acc)["label"]
'b'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from reglab.lab.metrics import FAMILY_OBJECTIVES, OBJECTIVES, Objective, format_value, metric

__all__ = [
    "choice_line",
    "choosable",
    "chosen",
    "name_metric",
    "named_objective",
    "objective_value",
    "optuna_value",
    "study_objective",
]


def named_objective(name: str) -> Objective:
    """The objective called ``name``, one of :data:`~reglab.lab.metrics.OBJECTIVES` (the one
    table of what a sweep may choose on; add an entry there for a new one). A test metric is
    refused with its reason: it is reported, never used to choose."""
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if name.startswith("test_"):
        raise ValueError(
            f"objective: test metrics never decide; choose on a validation metric "
            f"({', '.join(OBJECTIVES)}) (got {name!r})"
        )
    raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)} (got {name!r})")


def study_objective(study: Any, name: str | None = None) -> Objective:
    """The objective of a parsed study: ``name`` (see :func:`named_objective`) when given,
    else its family's default. A study that mixes families (e.g. autoencoders and the
    classifiers they pre-train) chooses on ``val_acc`` when any point is a classifier, else
    on its first point's family's."""
    if name is None and study.search.objectives:  # a searched study names its objective
        name = study.search.objectives[0]
    if name is not None:
        return named_objective(name)
    families = [p.config.model_kind.family for p in study.example_points]
    family = "classifier" if "classifier" in families else families[0]
    return OBJECTIVES[FAMILY_OBJECTIVES[family]]


def objective_value(metrics: Mapping[str, Any], objective: Objective) -> float | None:
    """The trial's objective metric, or None when it was not measured or is not finite."""
    value = metrics.get(objective.key)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def optuna_value(metrics: Mapping[str, Any], objective: Objective) -> float:
    """The value a finished trial's Optuna record holds (see the module)."""
    value = objective_value(metrics, objective)
    if value is None:
        return -math.inf if objective.direction == "maximize" else math.inf
    return value


def name_metric(study: optuna.Study, objective: Objective) -> None:
    """Name the Optuna study's value after ``objective`` (an experimental Optuna API whose
    warning is silenced here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([objective.name])


def chosen(summary: Sequence[Mapping[str, Any]], objective: Objective) -> Mapping[str, Any] | None:
    """The summary row (one per configuration, ``metrics[key] = (mean, std)`` over seeds)
    with the best mean objective; the first in study order on a tie; None when no row
    measured it."""
    best: Mapping[str, Any] | None = None
    best_mean = math.nan
    sign = 1.0 if objective.direction == "maximize" else -1.0
    for row in summary:
        mean = row.get("metrics", {}).get(objective.key, (math.nan, math.nan))[0]
        if mean is None or not math.isfinite(mean):
            continue
        if best is None or sign * mean > sign * best_mean:
            best, best_mean = row, mean
    return best


def choosable(
    summary: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The summary rows a choice may pick: not those of pruned trials (stopped early, their
    metrics are of an unfinished model; as Optuna's best trial, never the choice).

    >>> rows = [{"point": "a"}, {"point": "b"}]
    >>> choosable(rows, [{"point": "a", "pruned": True}, {"point": "b", "pruned": False}])
    [{'point': 'b'}]
    """
    pruned = {r["point"] for r in records if r.get("pruned")}
    return [row for row in summary if row["point"] not in pruned]


def choice_line(summary: Sequence[Mapping[str, Any]], objective: Objective) -> str:
    """The configuration the lab chooses, in one sentence, e.g. ``Chosen on val_acc (mean over
    seeds): L2 l2=0.001 with val % 97.9 ± 0.2; its test % 97.5 ± 0.3 is reported, never used
    to choose.``"""
    row = chosen(summary, objective)
    if row is None:
        return (
            f"Nothing chosen: no configuration measured {objective.name} (the study holds out "
            "no validation data)."
        )
    shown = metric(objective.key)
    text = (
        f"Chosen on {objective.name} (mean over seeds): {row['label']} with {shown.header} "
        f"{format_value(shown, *row['metrics'][objective.key])}"
    )
    if objective.test in row["metrics"]:
        test = metric(objective.test)
        value = format_value(test, *row["metrics"][objective.test])
        text += f"; its {test.header} {value} is reported, never used to choose"
    return text + "."
