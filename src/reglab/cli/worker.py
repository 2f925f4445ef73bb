"""``reglab worker``: join a study's sweep in a shared storage and run trials until done."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from reglab.cli.run import add_worker_options, positive_int
from reglab.lab import Overrides, RunDir, Sweep, find_study
from reglab.lab.sweep import optuna_study_name
from reglab.lab.trial import TrialContext

NAME = "worker"
HELP = "run trials of a study from a shared Optuna storage (e.g. PostgreSQL) until none remain"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", nargs="?", help="built-in study name or TOML path (or --run-dir)")
    parser.add_argument("--storage", required=True, help="Optuna storage URL shared by workers")
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="where to write trial files (default "
        "runs/<study id>); with no STUDY, the study is read from it",
    )
    parser.add_argument("--epochs", type=positive_int, help="as for reglab run (must match)")
    parser.add_argument("--seeds", type=positive_int, help="as for reglab run (must match)")
    parser.add_argument("--threads", type=positive_int, help="torch threads for this process")
    parser.add_argument("--tensorboard", type=Path, metavar="DIR", help="as for reglab run")
    add_worker_options(parser)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    if args.study is None:
        if args.run_dir is None:
            raise ValueError("reglab worker needs a STUDY or --run-dir")
        study = RunDir(args.run_dir).study()
    else:
        study, _, _ = find_study(args.study, Overrides(epochs=args.epochs, seeds=args.seeds))
    run_dir = RunDir(args.run_dir or Path("runs") / optuna_study_name(study))
    sweep = Sweep.create(study, args.storage, args.heartbeat, args.grace)

    def on_trial(batch: list, event: str) -> None:
        if not args.no_progress:
            console.print(f"worker: {event} {', '.join(t.key for t in batch)}")

    sweep.work(
        run_dir, on_trial, TrialContext(tensorboard=args.tensorboard), stack=not args.no_stack
    )
    console.print(f"worker: done; {sweep.completed()}/{len(sweep.trials)} trials complete")
    return 0
