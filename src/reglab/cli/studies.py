"""``reglab studies`` and ``reglab show STUDY``."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reglab.cli.options import add_max_trials_option
from reglab.lab import builtin_studies, find_study
from reglab.lab.settings.studyfile import GridTooLarge

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
        table.add_row(name, f"{len(study.points)} x {len(study.seeds)}", escape(description))
    Console().print(table)
    return 0


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
