"""Expand a study's grid into points (sweep axes crossed or zipped) and trials (x seeds)."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reglab.lab.studyfile import GridEntry, Study, StudyError, axis_values, is_axis

__all__ = ["GridPoint", "Trial", "expand", "trials"]


@dataclass(frozen=True)
class GridPoint:
    """One configuration: ``key`` is a stable, file-system-safe id; ``params`` the swept values
    (path -> value); ``config`` the fully resolved settings of the point."""

    key: str
    label: str
    entry: str
    params: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class Trial:
    """A grid point trained with one seed."""

    key: str
    point: GridPoint
    seed: int


def _axes(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if is_axis(value):
        yield path, value
    elif isinstance(value, dict):
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


def _points(study: Study, entry: GridEntry) -> list[GridPoint]:
    # The entry's settings over the study's defaults; sweep axes may sit in either.
    overrides = copy.deepcopy(entry.overrides)
    base = {
        "data": dict(study.data),
        "model": {**study.model, **overrides.pop("model", {})},
        "train": {**study.train, **overrides.pop("train", {})},
        **overrides,
    }
    axes = list(_axes(base))
    names = [".".join(p for p in path if p not in ("config",)) for path, _ in axes]
    values = [
        axis_values(f"{study.name}.grid.{entry.name}.{n}", a)
        for n, (_, a) in zip(names, axes, strict=True)
    ]
    if entry.mode == "zip":
        if len({len(v) for v in values}) > 1:
            raise StudyError(
                f"{study.name}.grid.{entry.name}: mode 'zip' needs axes of equal "
                f"length (got {[len(v) for v in values]})"
            )
        combos = list(zip(*values, strict=True)) if values else [()]
    else:
        combos = list(itertools.product(*values))
    points = []
    for combo in combos:
        config = copy.deepcopy(base)
        for (path, _), value in zip(axes, combo, strict=True):
            _set(config, path, value)
        short = [n.split(".")[-1] for n in names]
        params = dict(zip(names, combo, strict=True))
        label = entry.name + "".join(f" {s}={_fmt(v)}" for s, v in zip(short, combo, strict=True))
        points.append(GridPoint(_slug(label), label, entry.name, params, config))
    return points


def expand(study: Study) -> list[GridPoint]:
    """All grid points of ``study``, in file order."""
    points = [p for entry in study.grid for p in _points(study, entry)]
    keys = [p.key for p in points]
    if len(set(keys)) != len(keys):
        raise StudyError(
            f"{study.name}.grid: two grid points share the id "
            f"{next(k for k in keys if keys.count(k) > 1)!r}; rename an entry"
        )
    return points


def trials(study: Study) -> list[Trial]:
    """Every (grid point, seed) pair: one Optuna trial each."""
    return [Trial(f"{p.key}__seed{s}", p, s) for p in expand(study) for s in study.seeds]
