"""The search space of a grid entry: its axes as Optuna distributions, and back to settings.

An axis stands in place of any value of a (merged) grid entry, as in a grid study:

* ``{log = [a, b]}`` — a continuous log-uniform range for sampled methods
  (``trial.suggest_float(name, a, b, log=True)``), one value per decade for coarse-to-fine;
* ``{log = [a, b], num = n}`` — the grid's ``n`` geometric values, a categorical choice;
* ``{linear = [a, b]}`` — a continuous uniform range (``suggest_float(name, a, b)``);
* ``{values = [...]}`` — a categorical choice (``suggest_categorical``); values that are not
  numbers, strings or booleans (a regularizer's config table) are offered by index and stored
  as ``name`` = index in the trial's params.

An axis's name is its key path with ``config`` left out (``rules.fc*.kernel.l2``), as the grid
names its points' params. :func:`concrete` puts chosen values back into the entry: the
concrete grid-entry dict the lab parses as one point.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from reglab.lab.settings.schema import fail

__all__ = [
    "Axis",
    "SearchSpace",
    "concrete",
    "find_axes",
    "is_search_axis",
    "stored_params",
    "suggest",
]

_SHAPES = ({"values"}, {"log"}, {"log", "num"}, {"linear"})


def is_search_axis(value: Any) -> bool:
    """``{values}``, ``{log}``, ``{log, num}`` or ``{linear}``."""
    return isinstance(value, Mapping) and set(value) in _SHAPES


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Axis:
    """One axis: ``kind`` is ``"log"`` (continuous, ``low``/``high``), ``"linear"``
    (continuous) or ``"choice"`` (``choices``)."""

    name: str
    keys: tuple[str, ...]
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    @property
    def by_index(self) -> bool:
        """Choices that Optuna cannot store (tables, lists) are offered by index."""
        return any(not (v is None or isinstance(v, (bool, int, float, str))) for v in self.choices)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "log":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=True)
        if self.kind == "linear":
            return optuna.distributions.FloatDistribution(self.low, self.high)
        options = tuple(range(len(self.choices))) if self.by_index else self.choices
        return optuna.distributions.CategoricalDistribution(options)

    def value(self, stored: Any) -> Any:
        """The setting for a value stored in a trial's params."""
        return copy.deepcopy(self.choices[stored]) if self.by_index else stored


def _geometric(low: float, high: float, num: int) -> list[float]:
    lo, hi = math.log10(low), math.log10(high)
    if num == 1:
        return [float(low)]
    return [float(f"{10 ** (lo + (hi - lo) * i / (num - 1)):.6g}") for i in range(num)]


def _axis(name: str, keys: tuple[str, ...], raw: Mapping[str, Any], where: str) -> Axis:
    if "values" in raw:
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise fail(where, "'values' must be a non-empty list", values)
        return Axis(name, keys, "choice", choices=tuple(values))
    kind = "log" if "log" in raw else "linear"
    bounds = raw[kind]
    positive = kind == "log"
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(_is_number(b) for b in bounds)
        or (positive and bounds[0] <= 0)
        or bounds[0] >= bounds[1]
    ):
        rule = "0 < low < high" if positive else "low < high"
        raise fail(where, f"'{kind}' must be [low, high] with {rule}", bounds)
    if "num" in raw:
        num = raw["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise fail(where, "'num' must be an int >= 1", num)
        return Axis(name, keys, "choice", choices=tuple(_geometric(*bounds, num)))
    return Axis(name, keys, kind, float(bounds[0]), float(bounds[1]))


def _walk(value: Any, keys: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if is_search_axis(value):
        yield keys, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, (*keys, k))


@dataclass(frozen=True)
class SearchSpace:
    """The axes of one grid entry (``entry``: the merged entry they came from)."""

    entry: Mapping[str, Any]
    axes: tuple[Axis, ...]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {a.name: a.distribution() for a in self.axes}

    def __getitem__(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(name)


def find_axes(
    entry: Mapping[str, Any], where: Callable[[tuple[str, ...]], str] | str = "grid"
) -> SearchSpace:
    """The :class:`SearchSpace` of a merged grid entry. ``where(keys)`` (or a prefix) names
    an axis's key path in errors.

    >>> space = find_axes({"rules": {"fc*": {"kernel": {"class_name": "L2",
    ...     "config": {"l2": {"log": [1e-5, 1e-1]}}}}}})
    >>> axis = space.axes[0]
    >>> axis.name, axis.kind, axis.low, axis.high
    ('rules.fc*.kernel.l2', 'log', 1e-05, 0.1)
    """
    path = where if callable(where) else (lambda keys: ".".join([where, *keys]))
    axes = []
    for keys, raw in _walk(entry):
        name = ".".join(k for k in keys if k != "config")
        axes.append(_axis(name, keys, raw, path(keys)))
    return SearchSpace(entry, tuple(axes))


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask ``trial`` for a value of every axis (``trial.suggest_*``); returns the settings
    (axis name -> value; a by-index choice as its value, not its index)."""
    params = {}
    for a in space.axes:
        if a.kind == "choice":
            options = list(range(len(a.choices))) if a.by_index else list(a.choices)
            params[a.name] = a.value(trial.suggest_categorical(a.name, options))
        else:
            params[a.name] = trial.suggest_float(a.name, a.low, a.high, log=a.kind == "log")
    return params


def stored_params(space: SearchSpace, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A finished trial's ``params`` (by-index choices as indices) as settings."""
    return {a.name: a.value(stored[a.name]) for a in space.axes if a.name in stored}


def concrete(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The entry with every axis replaced by its value in ``params`` (axis name -> value):
    the concrete grid-entry dict of one point.

    >>> space = find_axes({"train": {"lr": {"log": [1e-4, 1e-2]}}, "name": "a"})
    >>> concrete(space, {"train.lr": 1e-3})
    {'train': {'lr': 0.001}, 'name': 'a'}
    """
    out = copy.deepcopy(dict(space.entry))
    for a in space.axes:
        if a.name not in params:
            raise KeyError(f"no value for axis {a.name!r}")
        tree = out
        for key in a.keys[:-1]:
            tree = tree[key]
        tree[a.keys[-1]] = copy.deepcopy(params[a.name])
    return out
