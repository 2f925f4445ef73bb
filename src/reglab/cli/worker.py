"""``reglab worker``: join a study's sweep in a shared storage and run trials until done."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from reglab.cli.lines import TrialLines
from reglab.cli.options import (
    OptionError,
    add_max_trials_option,
    add_worker_options,
    positive_int,
    writable_directory,
)
from reglab.lab import Overrides, RunDir, Sweep, Trust, find_study
from reglab.lab.interrupts import exit_with_parent
from reglab.lab.sweep import optuna_study_name
from reglab.lab.sweep.search import SearchSweep, sweep_class
from reglab.lab.sweep.storage import check_url, mark_store
from reglab.lab.trust import look_beside
from reglab.lab.work.device import check_study as check_device
from reglab.lab.work.heap import retain_freed_memory
from reglab.lab.work.training import TrialContext

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
    add_max_trials_option(parser)
    parser.add_argument("--tensorboard", type=Path, metavar="DIR", help="as for reglab run")
    add_worker_options(parser)
    parser.add_argument("--no-progress", action="store_true")
    # Set by `reglab run --jobs`: end (re-queueing this worker's trials) when it ends.
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.exit_with_parent is not None:
        exit_with_parent(args.exit_with_parent)
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()  # stacks' big tensors reuse their pages (reglab.lab.work.heap)
    console = Console(stderr=True)
    trust = Trust.of(args.trust_factory)
    check_url(args.storage)
    if args.study is None:
        if args.run_dir is None:
            raise OptionError("reglab worker needs a STUDY or --run-dir")
        study = RunDir(args.run_dir).study(args.max_trials)
    else:
        overrides = Overrides(epochs=args.epochs, seeds=args.seeds)
        study, _, _ = find_study(args.study, overrides, args.max_trials)
    look_beside(args.study)  # factory modules beside the study file need no PYTHONPATH
    trust.check(study)
    check_device(study, args.device)
    name = optuna_study_name(study)
    if args.study is None:  # the run directory's study, as its run began (never edited)
        recorded = RunDir(args.run_dir)
        name = recorded.optuna_study or name
        recorded.verify(study, name)
    run_dir = RunDir(args.run_dir or Path("runs") / name)
    writable_directory(run_dir.path, "--run-dir")
    try:
        sweep: Sweep | SearchSweep = sweep_class(study).create(
            study, args.storage, args.heartbeat, args.grace, db_retry=args.db_retry, name=name
        )

        lines = TrialLines(run_dir, len(sweep.trials), sweep.objective, stream=sys.stderr)
        began = [time.perf_counter()]

        def on_trial(batch: list, event: str) -> None:
            if args.no_progress:
                return
            if event == "start":
                began[0] = time.perf_counter()
                console.print(f"worker: start {', '.join(t.key for t in batch)}")
            else:  # one plain line per finished trial, with its key metrics
                lines.batch(batch, sweep.finished(), time.perf_counter() - began[0])

        with trust.active():
            sweep.work(
                run_dir,
                on_trial,
                TrialContext(tensorboard=args.tensorboard, device=args.device),
                stack=not args.no_stack,
            )
        diverged = len(sweep.diverged())
        console.print(
            f"worker: done; {sweep.completed()}/{len(sweep.trials)} trials complete"
            + (f", {diverged} diverged" if diverged else "")
        )
        return 0
    except Exception as err:
        mark_store(err, args.storage)  # a database error names its URL
        raise
