"""``reglab studies`` and ``reglab show STUDY``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reglab.lab import builtin_studies, find_study

NAME = "studies"
HELP = "list the built-in studies"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    table = Table(title="built-in studies (reglab run NAME)")
    table.add_column("name")
    table.add_column("grid points x seeds", justify="right")
    table.add_column("description")
    for name in builtin_studies():
        study, _, _ = find_study(name)
        description = " ".join(study.description.split())
        size = (
            f"{len(study.points)} x {len(study.seeds)}"
            if study.searched is None
            else f"{study.search.method} x {len(study.seeds)}"
        )
        table.add_row(name, size, escape(description))
    Console().print(table)
    return 0


class Show:
    NAME = "show"
    HELP = "print a study resolved: defaults, and every grid point with its settings"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="built-in study name or TOML path")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        study, _, _ = find_study(args.study)
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
        console.print(f"[bold]{study.name}[/]: {' '.join(study.description.split())}")
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
        for p in points:
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
    console.print(f"[bold]{study.name}[/]: {' '.join(study.description.split())}")
    console.print(
        f"search {dataclasses.asdict(search)}; seeds {list(study.seeds)}; entry "
        f"{study.searched.name!r}",
        markup=False,
    )
    for axis in axes:
        console.print(f"  {json.dumps(axis, default=str)}", markup=False)
    return 0
