"""``reglab report RUN_DIR``: (re)write a run's report from its storage. Reads the storage;
never writes to it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from reglab.lab import RunDir
from reglab.lab.report import write_report
from reglab.lab.sweep.search import sweep_class
from reglab.lab.sweep.storage import check_file, check_url

NAME = "report"
HELP = "write RUN_DIR/report.html, summary.md and PNGs from the run's results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--storage", help="Optuna storage URL (default: the run dir's SQLite)")


def run(args: argparse.Namespace) -> int:
    run_dir = RunDir(args.run_dir)
    study = run_dir.study()
    if args.storage is not None:
        check_url(args.storage)
    elif not run_dir.storage_db.is_file():
        raise FileNotFoundError(f"{run_dir.path} has no storage.db; pass --storage URL")
    else:
        check_file(
            run_dir.storage_db,
            "the run's results store",
            f"`reglab run --resume {run_dir.path} --rebuild-storage` rebuilds it from the "
            "finished trials' folders",
        )
    sweep = sweep_class(study).open(
        study, args.storage or run_dir.storage_url, run_dir.optuna_study
    )
    records = sweep.results()
    path = write_report(run_dir, study, records, len(sweep.trials))
    Console().print(f"{len(records)}/{len(sweep.trials)} trials; report: {path}")
    return 0
