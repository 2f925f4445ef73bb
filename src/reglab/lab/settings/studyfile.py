"""Study files: TOML, read with ``tomllib`` and never evaluated, parsed once into a
:class:`Study` of typed grid points.

A study file is study-level ``[data]``, ``[model]`` and ``[train]`` tables, ``seeds``, and
``[[grid]]`` entries that override ``model`` / ``train`` and add techniques (``rules``,
``label_smoothing``, ...). :func:`parse_study` merges each entry over the study tables,
expands its sweep axes (:mod:`reglab.lab.settings.grid`) and validates every resulting point
(:class:`~reglab.lab.settings.config.TrialConfig`) — so every mistake is reported with its key path
before a run directory or a trial exists. A study with more than one configuration holds out
``validation = 0.2`` of its training rows unless it says otherwise
(:mod:`reglab.lab.settings.selection`)::

    study.grid[1].rules."fc*".kernel: The 'l2' parameter of L2 must be a finite number >= 0...
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reglab._optional import toml
from reglab.lab.search.entry import SearchedEntry, check_searched, parse_entry
from reglab.lab.search.settings import SearchSettings
from reglab.lab.settings.config import LEVELS, TECHNIQUES
from reglab.lab.settings.data import DATASETS, anchor
from reglab.lab.settings.grid import GridPoint, Trial, axis_values, expand_entry, is_axis
from reglab.lab.settings.init import check_study as check_init
from reglab.lab.settings.init import resolve_paths as resolve_init_paths
from reglab.lab.settings.schema import StudyError, check_keys, choice, fail, key_path
from reglab.lab.settings.selection import with_validation

__all__ = [
    "DATASETS",
    "GRID_KEYS",
    "Overrides",
    "Study",
    "StudyError",
    "axis_values",
    "is_axis",
    "load_study",
    "parse_study",
]

TOP_KEYS = ("baseline", "data", "description", "grid", "model", "name", "search", "seeds", "train")
GRID_KEYS = ("mode", "model", "name", "rules", "schedules", "train", *TECHNIQUES, *LEVELS)


@dataclass(frozen=True)
class Overrides:
    """Command-line changes applied to a study file before it is parsed (``--epochs`` sets
    every point's epochs, ``--seeds N`` keeps the first N seeds)."""

    epochs: int | None = None
    seeds: int | None = None

    def apply(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        raw = copy.deepcopy(dict(raw))
        if self.epochs is not None:
            raw.setdefault("train", {})["epochs"] = self.epochs
            for entry in raw.get("grid", []) if isinstance(raw.get("grid"), list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("train"), dict):
                    entry["train"].pop("epochs", None)
        if self.seeds is not None:
            raw["seeds"] = list(raw.get("seeds", [0, 1, 2]))[: self.seeds]
        return raw

    def __bool__(self) -> bool:
        return self.epochs is not None or self.seeds is not None


@dataclass(frozen=True)
class Study:
    """A parsed study: its grid points (each with a typed config) and seeds.

    ``source`` is the document as parsed (overrides applied): what run directories record
    and what the Optuna study's name fingerprints. ``baseline`` is the key of the point the
    report compares every configuration with (``baseline = "name"``: a point's label or id, or
    a grid entry with one point); None when the file declares none (the report then looks for
    a point named ``none``). ``search`` is the ``[search]`` table; a
    study searched by another method than ``"grid"`` has no fixed ``points`` but one
    ``searched`` entry whose points the search chooses (:mod:`reglab.lab.search.entry`).
    """

    name: str
    description: str
    seeds: tuple[int, ...]
    points: tuple[GridPoint, ...]
    source: dict[str, Any] = field(repr=False, compare=False)
    baseline: str | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    searched: SearchedEntry | None = None

    @property
    def example_points(self) -> tuple[GridPoint, ...]:
        """The grid's points; for a searched study, one point per combination of its choice
        axes (:meth:`~reglab.lab.search.entry.SearchedEntry.examples`): what the checks
        before a run (trusted factories) look at."""
        if self.searched is None:
            return self.points
        return tuple(self.searched.examples())

    @property
    def trials(self) -> list[Trial]:
        """Every (grid point, seed) pair, grid order then seed order."""
        return [Trial(f"{p.key}__seed{s}", p, s) for p in self.points for s in self.seeds]

    def table(self, section: str) -> dict[str, Any]:
        """The study-level ``[data]``, ``[model]`` or ``[train]`` table as written."""
        return dict(self.source.get(section, {}))


def _table(path: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(path, "expected a table", value)
    return dict(value)


def _keys(path: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    check_keys(key_path(path), table, allowed)


def parse_study(
    raw: Mapping[str, Any],
    origin: str = "study",
    *,
    root: str | Path | None = None,
    selection: bool = True,
) -> Study:
    """Validate a decoded TOML document; raise :class:`StudyError` naming the key path.
    ``root`` is the study file's folder: ``[data] path`` / ``test_path`` are relative to it
    (and recorded absolute in ``Study.source``), and so are ``[train] init`` paths; without
    it, to the working directory. ``selection=False`` skips the default-validation rule
    (:mod:`~reglab.lab.settings.selection`): for a study recorded as run, which already holds
    what the rule gave it."""
    raw = _table(origin, raw)
    if root is not None:
        raw = anchor(raw, root)
        raw = resolve_init_paths(raw, root)  # [train] init paths, likewise
    _keys(origin, raw, TOP_KEYS)
    name = raw.get("name")
    if not isinstance(name, str):
        raise fail(f"{origin}.name", "expected a string", name)
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise fail(f"{origin}.name", "use letters, digits, '-' and '_'", name)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail(f"{origin}.description", "expected a string", description)
    seeds = raw.get("seeds", [0, 1, 2])
    if (
        not isinstance(seeds, list)
        or not seeds
        or len(set(seeds)) != len(seeds)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise fail(f"{origin}.seeds", "expected a list of distinct ints >= 0", seeds)
    study_tables = {s: _table(f"{origin}.{s}", raw.get(s)) for s in ("data", "model", "train")}
    grid = raw.get("grid")
    if not isinstance(grid, list) or not grid:
        raise fail(f"{origin}.grid", "expected a non-empty array of [[grid]] tables", grid)
    search = SearchSettings.parse(raw.get("search"), f"{origin}.search")
    if search.method != "grid" and len(grid) != 1:
        raise fail(
            f"{origin}.grid",
            f"method {search.method!r} searches one [[grid]] entry; put alternatives in a "
            "{values = [...]} axis",
            f"{len(grid)} entries",
        )
    points: list[GridPoint] = []
    names: set[str] = set()
    searched = None
    for i, entry in enumerate(grid):
        path = f"{origin}.grid[{i}]"
        entry = _table(path, entry)
        _keys(path, entry, GRID_KEYS)
        gname = entry.get("name")
        if not isinstance(gname, str):
            raise fail(f"{path}.name", "expected a string", gname)
        if gname in names:
            raise fail(f"{path}.name", "grid names must be unique", gname)
        names.add(gname)
        mode = choice("cross", "zip")(f"{path}.mode", entry.get("mode", "cross"))
        merged: dict[str, Any] = {"data": copy.deepcopy(study_tables["data"])}
        origins: dict[str, dict[str, str]] = {"data": {"": f"{origin}.data"}}
        for section in ("model", "train"):
            own = _table(f"{path}.{section}", entry.get(section))
            merged[section] = {**copy.deepcopy(study_tables[section]), **copy.deepcopy(own)}
            origins[section] = {
                "": f"{origin}.{section}",
                **dict.fromkeys(own, f"{path}.{section}"),
            }
        for key, value in entry.items():
            if key not in ("name", "mode", "model", "train"):
                merged[key] = copy.deepcopy(value)
        if search.method != "grid":
            searched = parse_entry(gname, merged, path, origins)
            continue
        points += expand_entry(gname, mode, merged, path, origins)
    keys = [p.key for p in points]
    duplicate = next((k for k in keys if keys.count(k) > 1), None)
    if duplicate is not None:
        raise StudyError(
            f"{origin}.grid: two grid points share the id {duplicate!r}; rename an entry"
        )
    # A study that chooses among configurations holds out validation data (settings.selection).
    data = with_validation(study_tables["data"], len(points), raw.get("search"), f"{origin}.data")
    if selection and data is not None:
        return parse_study({**raw, "data": data}, origin)  # paths already anchored
    points = list(check_init(raw, points, origin))  # after every point exists: init may name one
    if searched is not None:
        check_searched(search, searched, origin)
    baseline = _baseline(f"{origin}.baseline", raw.get("baseline"), points)
    return Study(
        name,
        description,
        tuple(seeds),
        tuple(points),
        copy.deepcopy(raw),
        baseline,
        search=search,
        searched=searched,
    )


def _baseline(path: str, value: Any, points: list[GridPoint]) -> str | None:
    """The key of the point ``baseline = "name"`` names (its label or id, or an entry of one
    point)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(path, "expected the name of a grid point", value)
    for p in points:
        if value in (p.key, p.label):
            return p.key
    entry = [p.key for p in points if p.entry == value]
    if len(entry) == 1:
        return entry[0]
    if entry:
        raise fail(path, f"grid entry {value!r} has {len(entry)} points; name one of them", value)
    raise fail(
        path, f"no grid point has this name (points: {', '.join(p.label for p in points)})", value
    )


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """``(document, text)`` of a TOML file; errors name the file."""
    tomllib = toml()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file") from None
    except OSError as err:
        raise StudyError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StudyError(
            f"{path}: not UTF-8 text (byte {err.start} is {data[err.start]:#04x}); save the "
            "study file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{path}: not valid TOML: {err}") from None


def load_study(path: str | Path, overrides: Overrides | None = None) -> Study:
    """Read and parse a study file."""
    path = Path(path)
    raw, _ = read_toml(path)
    return parse_study((overrides or Overrides()).apply(raw), origin=path.stem, root=path.parent)
