"""The report's Pareto front of a multi-objective search (``[search] objectives`` with two or
more names): every trained configuration as a point of its first two objectives, the
non-dominated ones highlighted, joined, numbered, and listed with their settings.

:func:`pareto_points` computes (pure: records in, points out, unit-tested);
:func:`pareto_figure` draws; :func:`pareto_figures` is what
:func:`~reglab.lab.report.write_report` asks (nothing for a study with one objective).
Dominance is decided on *all* the objectives, so with three a front point may lie behind
another in the drawn plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reglab.lab.metrics import OBJECTIVES, Objective, metric, objective_values
from reglab.lab.report import figures

__all__ = [
    "FrontPoint",
    "dominates",
    "front_listing",
    "front_sentence",
    "pareto_figure",
    "pareto_figures",
    "pareto_points",
]

Record = dict[str, Any]


@dataclass(frozen=True)
class FrontPoint:
    """One trained configuration: its ``label`` (settings), ``values`` (one per objective, as
    measured; the mean over seeds) and whether it is on the front."""

    label: str
    values: tuple[float, ...]
    front: bool


def dominates(a: Sequence[float], b: Sequence[float], objectives: Sequence[Objective]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one.

    >>> acc, norm = (OBJECTIVES[n] for n in ("val_acc", "weight_norm"))
    >>> dominates((0.9, 1.0), (0.8, 1.0), [acc, norm])
    True
    >>> dominates((0.9, 2.0), (0.8, 1.0), [acc, norm])  # better accuracy, larger norm
    False
    """
    signs = [1.0 if o.direction == "maximize" else -1.0 for o in objectives]
    pairs = list(zip(signs, a, b, strict=True))
    return all(s * x >= s * y for s, x, y in pairs) and any(s * x > s * y for s, x, y in pairs)


def pareto_points(records: Sequence[Record], objectives: Sequence[Objective]) -> list[FrontPoint]:
    """One point per configuration (records grouped by ``point``, first-seen order): each
    objective's mean over the seeds trained to the end (not pruned, not diverged) that
    measured every objective (finite); a configuration without such a seed is left out.
    ``front``: no other point dominates it (:func:`dominates`)."""
    grouped: dict[str, tuple[str, list[tuple[float, ...]]]] = {}
    for r in records:
        if r.get("pruned") or r.get("diverged"):
            continue
        values = [r.get("metrics", {}).get(o.key) for o in objectives]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            slot = grouped.setdefault(r.get("point", r["label"]), (r["label"], []))
            slot[1].append(tuple(float(v) for v in values))  # type: ignore[arg-type]
    measured = [
        (label, tuple(sum(column) / len(column) for column in zip(*seeds, strict=True)))
        for label, seeds in grouped.values()
    ]
    return [
        FrontPoint(label, values, not any(dominates(o, values, objectives) for _, o in measured))
        for label, values in measured
    ]


def _axis(objective: Objective) -> str:
    shown = metric(objective.key)
    better = "higher" if objective.direction == "maximize" else "lower"
    unit = " (%)" if shown.scale == 100 else ""
    return f"{shown.title}{unit}, {better} is better"


#: Front points listed by name beside the plot; more are numbered on the plot only.
LISTED = 24


@figures.styled
def pareto_figure(points: Sequence[FrontPoint], objectives: Sequence[Objective]) -> Any:
    """A scatter of the first two objectives: every configuration grey, the front's in red,
    joined in order of the first objective and numbered best-first on it (the numbers of
    ``best.py`` / ``best.toml``), each number's settings and values listed beside the plot;
    every point carries its label and values as a hover text."""
    fig = figures._figure(figsize=(10.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    x_metric, y_metric = (metric(o.key) for o in objectives[:2])

    def xy(p: FrontPoint) -> tuple[float, float]:
        return x_metric.scale * p.values[0], y_metric.scale * p.values[1]

    for p in points:
        style = {"color": "tab:red", "s": 36, "zorder": 3} if p.front else {"color": "0.6"}
        dot = ax.scatter(*([v] for v in xy(p)), **{"s": 20, **style})
        tip = f"{p.label}: {objective_values(objectives, p.values)}"
        tip += " (Pareto front)" if p.front else ""
        figures._tip(fig, dot, tip)
    sign = -1.0 if objectives[0].direction == "maximize" else 1.0
    front = sorted((p for p in points if p.front), key=lambda p: sign * p.values[0])
    listed = []
    for i, p in enumerate(front, start=1):
        ax.annotate(str(i), xy(p), xytext=(4, 3), textcoords="offset points", fontsize=7)
        if i <= LISTED:
            listed.append(f"{i}. {p.label}\n    {objective_values(objectives, p.values)}")
    if len(front) > LISTED:
        listed.append(f"… {len(front) - LISTED} more (hover over the points)")
    if len(front) > 1:
        ax.plot(
            [xy(p)[0] for p in front],
            [xy(p)[1] for p in front],
            color="tab:red",
            lw=0.8,
            label=f"Pareto front ({len(front)} of {len(points)})",
        )
        ax.legend(fontsize=7)
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel(_axis(objectives[0]), fontsize=8)
    ax.set_ylabel(_axis(objectives[1]), fontsize=8)
    ax.set_title(f"Pareto front: {objectives[0].name} vs {objectives[1].name}", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.08, right=0.6, bottom=0.1, top=0.92)
    fig.text(0.62, 0.92, "\n".join(listed), fontsize=6, va="top", family="monospace")
    return fig


def _objectives(study: Any) -> list[Objective]:
    return [OBJECTIVES[n] for n in study.search.objectives if n in OBJECTIVES]


def pareto_figures(study: Any, records: Sequence[Record]) -> list[tuple[str, str, Any]]:
    """``[(file name, caption, figure)]`` for ``write_report``: the front of a study with
    several objectives, nothing otherwise."""
    objectives = _objectives(study)
    points = pareto_points(records, objectives) if len(objectives) > 1 else []
    if not points:
        return []
    caption = (
        f"Pareto front of {', '.join(o.name for o in objectives)}: red points are not "
        "dominated by any other configuration (labelled with their settings); grey ones are"
    )
    return [("pareto.png", caption, pareto_figure(points, objectives))]


def front_sentence(study: Any, records: Sequence[Record]) -> str | None:
    """The report's status sentence for a multi-objective study (None for one objective):
    several objectives choose no one configuration."""
    objectives = _objectives(study)
    if len(objectives) < 2:
        return None
    front = [p for p in pareto_points(records, objectives) if p.front]
    names = " and ".join(o.name for o in objectives)
    return (
        f"Several objectives ({names}): {len(front)} configurations form the Pareto front "
        "(none is better on every objective); the test metrics decide nothing."
    )


def front_listing(study: Any, records: Sequence[Record]) -> list[str]:
    """What ``reglab run`` prints for a grid study with several objectives instead of one
    choice: :func:`front_sentence`, then each front configuration (best first on the first
    objective) with its mean values; empty for one objective."""
    sentence = front_sentence(study, records)
    if sentence is None:
        return []
    objectives = _objectives(study)
    sign = -1.0 if objectives[0].direction == "maximize" else 1.0
    front = sorted(
        (p for p in pareto_points(records, objectives) if p.front),
        key=lambda p: sign * p.values[0],
    )
    return [sentence, *(f"  {p.label}: {objective_values(objectives, p.values)}" for p in front)]
