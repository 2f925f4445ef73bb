"""``method = "pbt"``: Population Based Training inside one stack.

One trial trains ``members`` configurations as one :class:`~reglab.ensembles.ModelStack`.
Every ``interval`` epochs the engine, :class:`reglab.ensembles.PopulationBasedTraining`,
replaces the worst quarter of the members by copies of the best quarter (weights and
optimizer state) and multiplies their coefficients by 0.8 or 1.25. This module draws the
initial population: each member's value of every ``{log = [a, b]}`` axis log-uniform, of
every ``{linear = [a, b]}`` axis uniform (seeded). Choice axes cannot differ inside a stack
(a member's copy takes its donor's weights, not its architecture or regularizer kind), so a
PBT entry's ``{values = [...]}`` axes must hold one value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search.axes import SearchSpace
from reglab.lab.settings.schema import StudyError

__all__ = ["PBT", "initial_population"]


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
