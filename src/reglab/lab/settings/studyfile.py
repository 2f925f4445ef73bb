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
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reglab._optional import toml
from reglab.lab.search.entry import SearchedEntry, check_searched, parse_entry
from reglab.lab.search.settings import SearchSettings
from reglab.lab.settings.config import LEVELS, TECHNIQUES
from reglab.lab.settings.data import DATASETS, anchor
from reglab.lab.settings.grid import (
    GridPoint,
    Trial,
    axis_values,
    entry_size,
    expand_entry,
    is_axis,
)
from reglab.lab.settings.init import check_study as check_init
from reglab.lab.settings.init import resolve_paths as resolve_init_paths
from reglab.lab.settings.schema import (
    INT_MAX,
    StudyError,
    check_keys,
    choice,
    fail,
    key_path,
    shown_value,
)
from reglab.lab.settings.selection import with_validation

__all__ = [
    "DATASETS",
    "GRID_KEYS",
    "MAX_DEPTH",
    "MAX_TRIALS",
    "GridTooLarge",
    "Overrides",
    "Study",
    "StudyError",
    "axis_values",
    "changes",
    "is_axis",
    "load_study",
    "parse_study",
]

TOP_KEYS = ("baseline", "data", "description", "grid", "model", "name", "search", "seeds", "train")
#: The most trials (grid points x seeds) a study may have unless ``--max-trials`` says more;
#: counted before any grid point is built.
MAX_TRIALS = 10_000
#: The deepest nesting of tables and arrays a study document may have (a real one: about 8).
MAX_DEPTH = 32
#: The suffix a run directory adds to the study's name (``-YYYYmmdd-HHMMSS``), and the one
#: the Optuna study's name adds (``-`` and 10 hex digits).
_RUN_SUFFIX, _OPTUNA_SUFFIX = 16, 11


class GridTooLarge(StudyError):
    """A study with more trials than the cap; ``entries`` says what each grid entry holds:
    ``(name, grid points, [(axis, size), ...])``."""

    def __init__(
        self, message: str, trials: int, entries: list[tuple[str, int, list[tuple[str, int]]]]
    ) -> None:
        super().__init__(message)
        self.trials, self.entries = trials, entries


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

    def settings(self) -> dict[str, Any]:
        """What the study runs, as plain data: name, description, seeds and every grid point's
        parsed settings (defaults filled in) by key — whatever the document's spelling.
        Keys that may differ between machines running the same study (:data:`VARIABLE`) are
        left out."""
        return json.loads(
            json.dumps(
                {
                    "name": self.name,
                    "description": self.description,
                    "seeds": list(self.seeds),
                    "points": {p.key: _fixed(p.config.to_dict()) for p in self.points},
                },
                default=str,
            )
        )

    @property
    def fingerprint(self) -> str:
        """A content hash of :meth:`settings` (16 hex digits): equal for equal studies."""
        text = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Settings that may legitimately differ between runs of one study (never fingerprinted).
VARIABLE = frozenset({"device"})


def _fixed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _fixed(v) for k, v in value.items() if k not in VARIABLE}
    if isinstance(value, (list, tuple)):
        return [_fixed(v) for v in value]
    return value


def changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> list[str]:
    """What differs from settings ``old`` to ``new`` (both from :meth:`Study.settings`), at
    most ``limit`` items, e.g. ``points.none.train.epochs: 3 -> 5``, ``grid point 'b' added``."""
    out: list[str] = []
    old_points, new_points = old.get("points", {}), new.get("points", {})
    out += [f"grid point {k!r} added" for k in new_points if k not in old_points]
    out += [f"grid point {k!r} removed" for k in old_points if k not in new_points]
    rest_old = {k: v for k, v in old.items() if k != "points"}
    rest_new = {k: v for k, v in new.items() if k != "points"}
    _diff(rest_old, rest_new, "", out)
    for key in (k for k in new_points if k in old_points):
        _diff(old_points[key], new_points[key], f"points.{key}", out)
    return out[:limit]


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in dict.fromkeys([*old, *new]):
            where = f"{path}.{k}" if path else str(k)
            if k not in new:
                out.append(f"{where} removed")
            elif k not in old:
                out.append(f"{where} added ({_short(new[k])})")
            else:
                _diff(old[k], new[k], where, out)
    elif old != new:
        out.append(f"{path}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


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
    max_trials: int | None = None,
    *,
    root: str | Path | None = None,
    selection: bool = True,
) -> Study:
    """Validate a decoded TOML document; raise :class:`StudyError` naming the key path.
    ``root`` is the study file's folder: ``[data] path`` / ``test_path`` are relative to it
    (and recorded absolute in ``Study.source``), and so are ``[train] init`` paths; without
    it, to the working directory. ``selection=False`` skips the default-validation rule
    (:mod:`~reglab.lab.settings.selection`): for a study recorded as run, which already holds
    what the rule gave it.

    The grid is counted before it is expanded: more than ``max_trials`` trials (default
    :data:`MAX_TRIALS`) raises :class:`GridTooLarge`. Trial folder names are checked against
    the file system's limit on a name (that of the current directory)."""
    _check_depth(raw, origin)
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
    _fits_a_name(f"{origin}.name", name, max(_RUN_SUFFIX, _OPTUNA_SUFFIX), "the run directory")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail(f"{origin}.description", "expected a string", description)
    seeds = raw.get("seeds", [0, 1, 2])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise fail(f"{origin}.seeds", "expected a list of distinct ints >= 0", seeds)
    if max(seeds) > INT_MAX:  # torch and NumPy take 64-bit seeds
        raise fail(f"{origin}.seeds", "expected seeds below 2^63", seeds)
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
    entries = []
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
        entries.append((gname, mode, merged, path, origins))
    _check_size(origin, entries, len(seeds), MAX_TRIALS if max_trials is None else max_trials)
    points: list[GridPoint] = []
    for gname, mode, merged, path, origins in entries:
        points += expand_entry(gname, mode, merged, path, origins)
    keys = [p.key for p in points]
    duplicate = next((k for k in keys if keys.count(k) > 1), None)
    if duplicate is not None:
        raise StudyError(
            f"{origin}.grid: two grid points share the id {duplicate!r}; rename an entry"
        )
    seed_suffix = max(len(f"__seed{s}") for s in seeds)
    paths = {gname: path for gname, _, _, path, _ in entries}
    for point in points:
        _fits_a_name(f"{paths[point.entry]}.name", point.key, seed_suffix, "a trial folder")
    # A study that chooses among configurations holds out validation data (settings.selection).
    data = with_validation(study_tables["data"], len(points), raw.get("search"), f"{origin}.data")
    if selection and data is not None:
        return parse_study({**raw, "data": data}, origin, max_trials)  # paths already anchored
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


def _check_size(origin: str, entries: list[tuple[Any, ...]], n_seeds: int, max_trials: int) -> None:
    counted = [
        (gname, *entry_size(mode, merged, path, origins))
        for gname, mode, merged, path, origins in entries
    ]
    trials = sum(count for _, count, _ in counted) * n_seeds
    if trials > max_trials:
        raise GridTooLarge(
            f"{origin}.grid: {trials:,} trials (grid points x {n_seeds} seeds) exceed the cap "
            f"of {max_trials:,}; shrink the grid, or pass --max-trials {trials} if you mean it",
            trials,
            counted,
        )


def name_max() -> int:
    """The longest file name (bytes) the file system of the current directory allows."""
    try:
        return int(os.pathconf(".", "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _fits_a_name(path: str, name: str, suffix: int, what: str) -> None:
    """``name`` plus ``suffix`` characters is a file name the file system allows."""
    limit = name_max()
    size = len(name.encode("utf-8")) + suffix
    if size > limit:
        raise StudyError(
            f"{path}: too long for a file name: {what} would be named "
            f"{shown_value(name[:40] + '...')} ({size} bytes; the file system allows {limit})"
        )


def _check_depth(raw: Any, origin: str) -> None:
    """Tables and arrays nested deeper than :data:`MAX_DEPTH` are refused at their path,
    before anything recursive (copies, checks, messages) touches them."""
    stack: list[tuple[Any, str, int]] = [(raw, origin, 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise StudyError(
                f"{path}: nested more than {MAX_DEPTH} tables or arrays deep; a study needs "
                "far fewer"
            )
        if isinstance(value, Mapping):
            stack += [(v, f"{path}.{k}", depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]


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
    except RecursionError:
        raise StudyError(f"{path}: nested too deeply to be a study") from None
    except ValueError as err:  # an int of more than 4300 digits
        raise StudyError(f"{path}: a value cannot be read ({err})") from None


def load_study(path: str | Path, overrides: Overrides | None = None) -> Study:
    """Read and parse a study file."""
    path = Path(path)
    raw, _ = read_toml(path)
    return parse_study((overrides or Overrides()).apply(raw), origin=path.stem, root=path.parent)
