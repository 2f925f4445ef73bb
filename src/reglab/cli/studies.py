"""``reglab studies`` and ``reglab show STUDY``."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reglab.lab import builtin_studies, expand, find_study

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
        table.add_row(name, f"{len(expand(study))} x {len(study.seeds)}", escape(description))
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
        points = expand(study)
        if args.json:
            print(
                json.dumps(
                    [
                        {"key": p.key, "label": p.label, "params": p.params, "config": p.config}
                        for p in points
                    ],
                    indent=2,
                    default=str,
                )
            )
            return 0
        console = Console()
        console.print(f"[bold]{study.name}[/]: {' '.join(study.description.split())}")
        console.print(
            f"seeds {list(study.seeds)}; data {study.data}; model {study.model}; "
            f"train {study.train}",
            markup=False,
        )
        table = Table(
            title=f"{len(points)} grid points x {len(study.seeds)} seeds = "
            f"{len(points) * len(study.seeds)} trials"
        )
        table.add_column("key")
        table.add_column("settings beyond the defaults")
        for p in points:
            extra = {k: v for k, v in p.config.items() if k not in ("data", "model", "train")}
            extra.update(
                {f"model.{k}": v for k, v in p.config["model"].items() if study.model.get(k) != v}
            )
            extra.update(
                {f"train.{k}": v for k, v in p.config["train"].items() if study.train.get(k) != v}
            )
            table.add_row(escape(p.key), escape(json.dumps(extra, default=str)))
        console.print(table)
        return 0
