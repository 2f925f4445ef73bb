"""Multi-objective results: the Pareto front (Optuna's ``study.best_trials``), each point with
its settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from reglab.lab.search.axes import SearchSpace, stored_params

__all__ = ["ParetoPoint", "pareto_front"]


@dataclass(frozen=True)
class ParetoPoint:
    """One non-dominated trial: its number, objective values and settings."""

    number: int
    values: tuple[float, ...]
    params: dict[str, Any]


def pareto_front(study: optuna.Study, space: SearchSpace | None = None) -> list[ParetoPoint]:
    """The complete trials no other complete trial dominates (for one objective: the best),
    sorted by the first objective; ``space`` turns by-index choices back into settings."""
    points = []
    for t in study.best_trials:
        params = stored_params(space, t.params) if space is not None else dict(t.params)
        points.append(ParetoPoint(t.number, tuple(t.values), params))
    return sorted(points, key=lambda p: (p.values, p.number))
