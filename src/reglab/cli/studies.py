"""``reglab studies`` and ``reglab show STUDY``.

``reglab studies`` prints one line per built-in study — name, model kind(s), dataset, trials
(configurations x seeds), estimated time on this machine (:mod:`reglab.cli.estimate`) and the
data it needs — read from the TOML files alone: no study is parsed into configurations and no
model is imported or built, so the listing is quick. ``--long`` adds each study's description.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reglab._optional import toml
from reglab.cli.estimate import StudyCost, format_duration, measure, study_cost
from reglab.cli.options import add_max_trials_option
from reglab.lab import builtin_studies, find_study
from reglab.lab.settings.grid import is_axis
from reglab.lab.settings.studyfile import GridTooLarge

NAME = "studies"
HELP = "list the built-in studies (one line each, with an estimated time; --long: descriptions)"

__all__ = ["COLUMNS", "StudyLine", "configurations", "data_needed", "study_line"]

#: The listing's columns, in order (the header line prints them).
COLUMNS = ("name", "kind", "dataset", "trials", "est. time", "data")
_RIGHT = frozenset({"trials", "est. time"})  # right-aligned columns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--long", action="store_true", help="add each study's description")


@dataclass(frozen=True)
class StudyLine:
    """What ``reglab studies`` says about one study."""

    name: str
    kinds: tuple[str, ...]
    dataset: str
    configurations: int
    seeds: int
    description: str
    search: str = "grid"  #: the [search] method; a search chooses its configurations
    #: the study's work, priced by :meth:`StudyCost.seconds`; None: not told by the file
    cost: StudyCost | None = None

    @property
    def trials(self) -> int:
        return self.configurations * self.seeds

    @property
    def size(self) -> str:
        """``8x3=24`` for a grid; ``tpe`` or ``coarse-to-fine x3`` (seeds) for a search."""
        if self.search == "grid":
            return f"{self.configurations}x{self.seeds}={self.trials}"
        return f"{self.search} x{self.seeds}"


def _axis_length(value: Mapping[str, Any]) -> int:
    if "values" in value:
        values = value["values"]
        return len(values) if isinstance(values, list) else 1
    num = value.get("num")
    return num if isinstance(num, int) and num > 0 else 1


def _axes(value: Any) -> list[int]:
    """The lengths of the sweep axes in a (merged) table."""
    if is_axis(value):
        return [_axis_length(value)]
    if isinstance(value, Mapping):
        return [n for v in value.values() for n in _axes(v)]
    return []


def configurations(document: Mapping[str, Any]) -> int:
    """How many configurations (grid points) a decoded study file expands to: each entry's
    axes (its own and the study-level tables' it inherits) crossed, or zipped with
    ``mode = "zip"``. Counted from the document alone (the parser checks it)."""
    total = 0
    for entry in document.get("grid", []):
        if not isinstance(entry, Mapping):
            continue
        merged = {
            k: {**document.get(k, {}), **entry.get(k, {})}
            if isinstance(entry.get(k, {}), Mapping)
            else entry[k]
            for k in ("model", "train")
        }
        merged.update({k: v for k, v in entry.items() if k not in ("model", "train")})
        lengths = _axes(merged) + _axes(document.get("data", {}))
        if entry.get("mode") == "zip":
            total += lengths[0] if lengths else 1
        else:
            total += math.prod(lengths)
    return total


def study_line(text: str) -> StudyLine:
    """The listing of one study file's text (TOML, decoded; nothing parsed further)."""
    document = toml().loads(text)
    model = document.get("model", {})
    kinds = [model.get("kind", "mlp")]
    for entry in document.get("grid", []):
        entry_model = entry.get("model", {}) if isinstance(entry, Mapping) else {}
        kind = entry_model.get("kind") if isinstance(entry_model, Mapping) else None
        if isinstance(kind, str) and kind not in kinds:
            kinds.append(kind)
    return StudyLine(
        name=document.get("name", "?"),
        kinds=tuple(kinds),
        dataset=document.get("data", {}).get("name", "digits"),
        configurations=configurations(document),
        seeds=len(document.get("seeds", [0, 1, 2])),
        description=" ".join(document.get("description", "").split()),
        search=str(document.get("search", {}).get("method", "grid")),
        cost=study_cost(document),
    )


def data_needed(dataset: str) -> str:
    """Whether ``dataset`` is here, or how to get it (``reglab data list`` says the same)."""
    if dataset == "teacher":
        return "none (synthetic)"
    from reglab.data import list_datasets

    status = {row.name: row for row in list_datasets()}
    row = status.get("image-patches" if dataset == "patches" else dataset)
    if row is None:
        return "?"
    if row.available:
        return "bundled" if row.how_to_get == "bundled" else "here"
    return row.how_to_get


def run(args: argparse.Namespace) -> int:
    lines = [study_line(text) for text in builtin_studies().values()]
    speed = measure()  # once per listing, ~0.1 s
    rows = [
        (
            s.name,
            "+".join(s.kinds),
            s.dataset,
            s.size,
            format_duration(None if s.cost is None else s.cost.seconds(speed)),
            data_needed(s.dataset),
        )
        for s in lines
    ]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS) - 1)]

    def line(cells: tuple[str, ...]) -> str:
        *aligned, last = cells
        padded = [
            c.rjust(w) if name in _RIGHT else c.ljust(w)
            for name, c, w in zip(COLUMNS, aligned, widths, strict=False)
        ]
        return "  ".join([*padded, last])

    print(line(COLUMNS))
    for study, row in zip(lines, rows, strict=True):
        print(line(row))
        if args.long:
            print(
                textwrap.fill(
                    study.description, 88, initial_indent="    ", subsequent_indent="    "
                )
            )
            work = "not told by the file" if study.cost is None else study.cost.describe()
            print(f"    est. time counts: {work}")
            print()
    print(_estimate_note())
    print(
        "reglab run NAME runs one; reglab show NAME lists its configurations"
        + ("" if args.long else "; --long adds descriptions")
    )
    return 0


def _estimate_note() -> str:
    """What the ``est. time`` column means, and whether other jobs load the machine now: the
    estimate holds for a lightly loaded machine (``docs/guide/lab.md``)."""
    note = "est. time: priced at this machine's speed measured now; ? = not told by the file"
    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.5 * cpus:  # up to there, runs took at most 1.5x the estimate (measured)
        note += (
            f"\nthe machine is busy now (load {load:.1f} on {cpus} CPUs): runs take longer, "
            "up to ~5x"
        )
    return note


class Show:
    NAME = "show"
    HELP = "print a study resolved: defaults, and every grid point with its settings"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="built-in study name or TOML path")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        add_max_trials_option(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            study, _, _ = find_study(args.study, max_trials=args.max_trials)
        except GridTooLarge as err:  # counted, never built: summarised
            return _summarise(err, args.json)
        if study.searched is not None:
            return _show_search(study, args.json)
        points = study.points
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "key": p.key,
                            "label": p.label,
                            "params": p.params,
                            "config": p.config.to_dict(),
                        }
                        for p in points
                    ],
                    indent=2,
                    default=str,
                )
            )
            return 0
        console = Console()
        console.print(f"[bold]{study.name}[/]: {escape(' '.join(study.description.split()))}")
        defaults = points[0].config.to_dict()
        console.print(
            f"seeds {list(study.seeds)}; data {defaults['data']}; model {defaults['model']}; "
            f"train {defaults['train']}",
            markup=False,
        )
        table = Table(
            title=f"{len(points)} grid points x {len(study.seeds)} seeds = "
            f"{len(points) * len(study.seeds)} trials"
        )
        table.add_column("key")
        table.add_column("settings beyond the first point's data, model and train")
        for p in points[:LISTED]:
            config = p.config.to_dict()
            extra = {k: v for k, v in config.items() if k not in ("data", "model", "train")}
            for section in ("data", "model", "train"):
                extra.update(
                    {
                        f"{section}.{k}": v
                        for k, v in config[section].items()
                        if defaults[section].get(k) != v
                    }
                )
            table.add_row(escape(p.key), escape(json.dumps(extra, default=str)))
        if len(points) > LISTED:
            table.add_row(f"... {len(points) - LISTED:,} more", "reglab show --json lists all")
        console.print(table)
        return 0


def _show_search(study: Any, as_json: bool) -> int:
    """A searched study: its method and settings, and the searched entry's axes."""
    search = study.search
    axes = [
        {"axis": a.name, "kind": a.kind}
        | ({"choices": list(a.choices)} if a.kind == "choice" else {"low": a.low, "high": a.high})
        for a in study.searched.space.axes
    ]
    if as_json:
        print(json.dumps({"search": dataclasses.asdict(search), "axes": axes}, default=str))
        return 0
    console = Console()
    console.print(f"[bold]{study.name}[/]: {escape(' '.join(study.description.split()))}")
    console.print(
        f"search {dataclasses.asdict(search)}; seeds {list(study.seeds)}; entry "
        f"{study.searched.name!r}",
        markup=False,
    )
    for axis in axes:
        console.print(f"  {json.dumps(axis, default=str)}", markup=False)
    return 0


#: The most grid points ``reglab show`` lists in its table.
LISTED = 200


def _summarise(err: GridTooLarge, as_json: bool) -> int:
    """A grid over the cap, described by its entries and axes (nothing expanded)."""
    if as_json:
        entries = [
            {"name": name, "points": count, "axes": dict(axes)} for name, count, axes in err.entries
        ]
        print(json.dumps({"trials": err.trials, "over_cap": str(err), "entries": entries}))
        return 0
    console = Console()
    table = Table(title=f"{err.trials:,} trials: too many to list")
    table.add_column("grid entry")
    table.add_column("grid points", justify="right")
    table.add_column("axes (values each)")
    for name, count, axes in err.entries:
        table.add_row(
            escape(name), f"{count:,}", escape(", ".join(f"{a} {n:,}" for a, n in axes)) or "-"
        )
    console.print(table)
    console.print(escape(str(err)), markup=True)
    return 0
