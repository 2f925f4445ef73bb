"""``method = "coarse-to-fine"``: the tutorials' recipe — try the coefficient on a log scale,
then grid-search inside the most promising order of magnitude.

Stage 1 takes one value per decade of every ``{log = [a, b]}`` axis (:func:`decade_values`;
other axes' choices are crossed as in a grid). Each next stage (:func:`refine`) compares the
values measured so far on the validation metric averaged over seeds and puts ``points``
log-spaced values (3 significant digits) inside the best value's cell — from the geometric
midpoint with its lower neighbour to the one with its upper neighbour — extended to the
neighbour itself when that neighbour is **within noise** of the best. Within noise means the
two ``mean ± std`` intervals overlap (``|m₁ − m₂| <= s₁ + s₂``, ``std`` the sample standard
deviation over seeds, 0 with one seed): a difference that the seeds' spread could explain.
Values already measured are not repeated. ``stages = 3`` refines once more, the same way, over
all values measured so far.

With several log axes the refinement is coordinate-wise at the best point: each axis is
refined on the slice of results that share the best point's other values, and the next stage
crosses the refined values.

All functions are pure: the lab trains the points and passes results back.

>>> decade_values(1e-5, 1e-1)
[1e-05, 0.0001, 0.001, 0.01, 0.1]
>>> step = refine({1e-4: [0.95, 0.96], 1e-3: [0.97, 0.975], 1e-2: [0.90, 0.91]}, points=3)
>>> step.best, step.values
(0.001, [0.000316, 0.00316])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search.axes import SearchSpace
from reglab.lab.settings.schema import StudyError

__all__ = [
    "CoarseToFine",
    "Refinement",
    "Summary",
    "decade_values",
    "evidence",
    "first_stage",
    "next_stage",
    "refine",
    "summarize",
    "within_noise",
]


@register
class CoarseToFine(SearchMethod):
    """Fixed stages the lab enqueues (:func:`first_stage`, then :func:`next_stage`)."""

    name = "coarse-to-fine"


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def _short(value: float) -> str:
    """``3e-4``, ``3.16e-4``: a coefficient in scientific notation, 3 significant digits."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def decade_values(low: float, high: float) -> list[float]:
    """One value per decade: the powers of ten in ``[low, high]``; the endpoints too when
    that leaves fewer than two values."""
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    values = [float(f"1e{k}") for k in range(first, last + 1)]
    if len(values) < 2:
        values = sorted({float(low), *values, float(high)})
    return values


@dataclass(frozen=True)
class Summary:
    """One value's results over seeds: mean, sample std (0 with one seed), count."""

    value: float
    mean: float
    std: float
    n: int


def summarize(results: Mapping[float, Sequence[float]]) -> list[Summary]:
    """Each value's :class:`Summary`, sorted by value; non-finite metrics are left out."""
    out = []
    for value, metrics in sorted(results.items()):
        finite = np.array([m for m in metrics if math.isfinite(m)], dtype=float)
        if finite.size == 0:
            continue
        std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        out.append(Summary(float(value), float(finite.mean()), std, int(finite.size)))
    return out


def within_noise(a: Summary, b: Summary) -> bool:
    """Whether the ``mean ± std`` intervals of ``a`` and ``b`` overlap."""
    return abs(a.mean - b.mean) <= a.std + b.std


@dataclass(frozen=True)
class Refinement:
    """A refinement step: the ``best`` value, the ``neighbour`` found within noise (or None),
    the ``interval`` searched next and its new ``values`` (none already measured)."""

    best: float
    neighbour: float | None
    interval: tuple[float, float]
    values: list[float]
    summaries: list[Summary]


def refine(
    results: Mapping[float, Sequence[float]], *, maximize: bool = True, points: int = 5
) -> Refinement:
    """The next stage's values from ``results`` (value -> per-seed validation metrics of
    every value measured so far). See the module docstring."""
    summaries = summarize(results)
    if not summaries:
        raise ValueError("refine needs at least one value with a finite metric")
    sign = 1.0 if maximize else -1.0
    i = max(range(len(summaries)), key=lambda j: (sign * summaries[j].mean, -j))
    best = summaries[i]
    lower = summaries[i - 1] if i > 0 else None
    upper = summaries[i + 1] if i + 1 < len(summaries) else None
    lo = math.sqrt(best.value * lower.value) if lower else best.value
    hi = math.sqrt(best.value * upper.value) if upper else best.value
    near = [s for s in (lower, upper) if s is not None and within_noise(best, s)]
    neighbour = max(near, key=lambda s: sign * s.mean) if near else None
    if neighbour is not None:
        lo, hi = min(lo, neighbour.value), max(hi, neighbour.value)
    if lo == hi:  # a single value: nothing to refine
        return Refinement(best.value, None, (lo, hi), [], summaries)
    grid = np.geomspace(lo, hi, points)
    measured = [s.value for s in summaries]
    values = []
    for v in (_round(float(x)) for x in grid):
        if all(not math.isclose(v, m, rel_tol=1e-6) for m in [*measured, *values]):
            values.append(v)
    return Refinement(
        best.value, None if neighbour is None else neighbour.value, (lo, hi), values, summaries
    )


def evidence(
    name: str,
    results: Mapping[float, Sequence[float]],
    metric: str,
    *,
    maximize: bool = True,
    scale: float = 1.0,
    decimals: int = 1,
) -> str:
    """The chosen value and why: its metric (mean ± std over seeds, times ``scale``) against
    the runner-up's, e.g. ``l2 = 3e-4: val_acc 97.9 ± 0.2 vs 97.5 ± 0.3 at 1e-4``.

    >>> evidence("l2", {1e-4: [0.972, 0.978], 3e-4: [0.977, 0.981]}, "val_acc", scale=100)
    'l2 = 3e-4: val_acc 97.9 ± 0.3 vs 97.5 ± 0.4 at 1e-4'
    """
    sign = 1.0 if maximize else -1.0
    ranked = sorted(summarize(results), key=lambda s: -sign * s.mean)
    if not ranked:
        raise ValueError("evidence needs at least one value with a finite metric")

    def stat(s: Summary) -> str:
        return f"{s.mean * scale:.{decimals}f} ± {s.std * scale:.{decimals}f}"

    text = f"{name} = {_short(ranked[0].value)}: {metric} {stat(ranked[0])}"
    if len(ranked) > 1:
        text += f" vs {stat(ranked[1])} at {_short(ranked[1].value)}"
    return text


# -- stages of points (several axes) ---------------------------------------------------------
def _refinable(space: SearchSpace) -> list[str]:
    names = []
    for a in space.axes:
        if a.kind == "linear":
            raise StudyError(
                f"{a.name}: method 'coarse-to-fine' refines {{log = [a, b]}} axes; a "
                "{linear = [a, b]} axis needs a sampled method ('tpe', 'random' or 'qmc')"
            )
        if a.kind == "log":
            names.append(a.name)
    if not names:
        raise StudyError(
            "method 'coarse-to-fine' needs at least one {log = [a, b]} axis (without num)"
        )
    return names


def first_stage(space: SearchSpace) -> list[dict[str, Any]]:
    """Stage 1: one value per decade on each log axis, crossed with the choice axes."""
    _refinable(space)
    values = [
        decade_values(a.low, a.high) if a.kind == "log" else list(a.choices) for a in space.axes
    ]
    names = [a.name for a in space.axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def next_stage(
    space: SearchSpace,
    results: Sequence[tuple[Mapping[str, Any], Sequence[float]]],
    *,
    maximize: bool = True,
    points: int = 5,
) -> list[dict[str, Any]]:
    """The next stage's points from ``results`` (``(params, per-seed metrics)`` of every
    point measured so far): each log axis refined at the best point (see the module), the
    refined values crossed; [] when there is nothing new to try."""
    names = _refinable(space)
    sign = 1.0 if maximize else -1.0
    scored = [(p, summarize({0.0: m})) for p, m in results]
    scored = [(p, s[0]) for p, s in scored if s]
    if not scored:
        raise ValueError("next_stage needs at least one point with a finite metric")
    best = max(scored, key=lambda ps: sign * ps[1].mean)[0]
    per_axis = []
    for name in names:
        others = [n for n in best if n != name]
        line: dict[float, list[float]] = {}
        for params, metrics in results:
            if all(params[o] == best[o] for o in others):
                line.setdefault(float(params[name]), []).extend(metrics)
        new = refine(line, maximize=maximize, points=points).values
        per_axis.append(sorted({*new, float(best[name])}))
    points_out = []
    measured = [dict(p) for p, _ in results]
    for combo in itertools.product(*per_axis):
        point = {**best, **dict(zip(names, combo, strict=True))}
        if point not in measured:
            points_out.append(point)
    return points_out
