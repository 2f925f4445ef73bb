"""Sweep axes, and the grid points and trials they expand to.

An axis is ``{values = [...]}`` or ``{log = [low, high], num = n}`` in place of any value of
a grid entry (merged over the study-level tables). Each entry's axes are crossed (default) or
zipped; each combination is one :class:`GridPoint`, parsed into a
:class:`~reglab.lab.settings.config.TrialConfig`; each point times each seed is one :class:`Trial`.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.schema import StudyError, fail, section_path

__all__ = [
    "GridPoint",
    "Trial",
    "axis_size",
    "axis_values",
    "entry_size",
    "expand_entry",
    "is_axis",
]


@dataclass(frozen=True)
class GridPoint:
    """One configuration: ``key`` is a stable, file-system-safe id; ``params`` the swept values
    (path -> value); ``config`` the parsed settings of the point."""

    key: str
    label: str
    entry: str
    params: dict[str, Any]
    config: TrialConfig


@dataclass(frozen=True)
class Trial:
    """A grid point trained with one seed: one Optuna trial."""

    key: str
    point: GridPoint
    seed: int


def is_axis(value: Any) -> bool:
    """A sweep axis: ``{values = [...]}`` or ``{log = [low, high], num = n}``."""
    return isinstance(value, Mapping) and (set(value) == {"values"} or set(value) == {"log", "num"})


def axis_size(path: str, value: Mapping[str, Any]) -> int:
    """How many values the axis ``value`` has — checked, never expanded (``num = 10**9`` is
    answered at once)."""
    if "values" in value:
        values = value["values"]
        if not isinstance(values, list) or not values:
            raise fail(path, "'values' must be a non-empty list", values)
        return len(values)
    _log_bounds(path, value["log"])
    num = value["num"]
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise fail(path, "'num' must be an int >= 1", num)
    return num


def _log_bounds(path: str, bounds: Any) -> tuple[float, float]:
    """``log10`` of the bounds of a log axis ``[low, high]`` (finite floats, ``0 < low``)."""
    if not (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0 for b in bounds)
    ):
        raise fail(path, "'log' must be [low, high] with 0 < low", bounds)
    try:
        finite = all(math.isfinite(float(b)) for b in bounds)
    except OverflowError:  # an int beyond the range of a float
        finite = False
    if not finite:
        raise fail(path, "'log' bounds must be finite floats", bounds)
    lo, hi = (math.log10(b) for b in bounds)
    return lo, hi


def axis_values(path: str, value: Mapping[str, Any]) -> list[Any]:
    """The values of one sweep axis (log ranges are geometric, endpoints included)."""
    size = axis_size(path, value)
    if "values" in value:
        return list(value["values"])
    lo, hi = _log_bounds(path, value["log"])
    if size == 1:
        return [float(value["log"][0])]
    return [float(f"{10 ** (lo + (hi - lo) * i / (size - 1)):.6g}") for i in range(size)]


def entry_size(
    mode: str, merged: Mapping[str, Any], entry_path: str, origins: Mapping[str, Mapping[str, str]]
) -> tuple[int, list[tuple[str, int]]]:
    """How many grid points an entry expands to, and its axes (name, size) — counted, not
    expanded."""
    axes = list(_axes(merged))
    sizes = [axis_size(value_path(path, entry_path, origins), a) for path, a in axes]
    names = [".".join(p for p in path if p != "config") for path, _ in axes]
    if not sizes:
        return 1, []
    count = max(sizes) if mode == "zip" else math.prod(sizes)
    return count, list(zip(names, sizes, strict=True))


def _axes(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if is_axis(value):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _axes(v, (*path, k))


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def _fmt(value: Any) -> str:
    if isinstance(value, list):  # layer sizes [64, 4] -> 64x4
        return "x".join(_fmt(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def value_path(
    keys: tuple[str, ...], entry_path: str, origins: Mapping[str, Mapping[str, str]]
) -> str:
    """The study-file path of a value of the merged table: ``s.train.lr`` for a study-level
    value, ``s.grid[1].rules."fc*".kernel.config.l2`` for one of an entry."""
    head, rest = keys[0], keys[1:]
    if head in ("data", "model", "train") and rest:
        return ".".join([section_path(origins.get(head, {}), entry_path, head)(rest[0]), *rest[1:]])
    if head == "rules" and rest:
        return ".".join([f'{entry_path}.rules."{rest[0]}"', *rest[1:]])
    return ".".join([entry_path, *keys])


def expand_entry(
    name: str,
    mode: str,
    merged: Mapping[str, Any],
    entry_path: str,
    origins: Mapping[str, Mapping[str, str]],
) -> list[GridPoint]:
    """The grid points of one entry: its axes crossed (``mode = "cross"``) or zipped, every
    combination parsed into a :class:`~reglab.lab.settings.config.TrialConfig`."""
    axes = list(_axes(merged))
    names = [".".join(p for p in path if p != "config") for path, _ in axes]
    values = [axis_values(value_path(path, entry_path, origins), a) for path, a in axes]
    if mode == "zip":
        if len({len(v) for v in values}) > 1:
            raise StudyError(
                f"{entry_path}: mode 'zip' needs axes of equal length "
                f"(got {[len(v) for v in values]})"
            )
        combos = list(zip(*values, strict=True)) if values else [()]
    else:
        combos = list(itertools.product(*values))
    points = []
    for combo in combos:
        concrete = copy.deepcopy(dict(merged))
        for (path, _), value in zip(axes, combo, strict=True):
            _set(concrete, path, value)
        short = [n.split(".")[-1] for n in names]
        params = dict(zip(names, combo, strict=True))
        label = name + "".join(f" {s}={_fmt(v)}" for s, v in zip(short, combo, strict=True))
        config = TrialConfig.parse(concrete, entry_path, origins)
        points.append(GridPoint(_slug(label), label, name, params, config))
    return points
