"""``reglab run [STUDY]``: run a study's sweep into a run directory, then write its report."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from reglab.lab import Overrides, RunDir, Sweep, find_study, summarize
from reglab.lab.metrics import format_value, pick
from reglab.lab.report import write_report
from reglab.lab.studyfile import StudyError
from reglab.lab.sweep import DirectoryLock
from reglab.lab.trial import TrialContext

NAME = "run"
HELP = "run a study (built-in name or TOML file; default: the embedded digits study)"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "study",
        nargs="?",
        default=None,
        help="built-in study name or path to a study TOML (default: default)",
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/<study>-<time>)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run in RUN_DIR (its study is reused)",
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: SQLite in the run dir); "
        "postgresql://... lets `reglab worker` processes elsewhere help",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="worker processes on this machine (threads split between them)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads per worker (default: CPU count / jobs)",
    )
    parser.add_argument("--epochs", type=positive_int, help="override every grid point's epochs")
    parser.add_argument("--seeds", type=positive_int, help="use only the first N seeds")
    parser.add_argument(
        "--tensorboard",
        type=Path,
        metavar="DIR",
        help="write TensorBoard event files of every trial under DIR/<trial>",
    )
    add_worker_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heartbeat",
        type=positive_int,
        default=10,
        help="seconds between a running trial's heartbeats (10)",
    )
    parser.add_argument(
        "--grace",
        type=positive_int,
        default=30,
        help="seconds without heartbeat before a trial is retried (30)",
    )
    parser.add_argument(
        "--no-stack",
        action="store_true",
        help="train every trial alone (by default, trials that differ only in seed and "
        "penalty coefficients train together as one model stack)",
    )


def results_table(summary: list[dict[str, Any]], title: str) -> Table:
    """Console table: the metrics registry's console columns (at most 7) that the study
    recorded; the full table is in the run's summary.md and report.html."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("config", no_wrap=True, max_width=22)
    columns = pick({k for row in summary for k in row["metrics"]}, "console", 7)
    for m in columns:
        table.add_column(escape(m.header), justify="right", no_wrap=True)
    for row in summary:
        cells = []
        for m in columns:
            mean, std = row["metrics"].get(m.key, (math.nan, 0.0))
            cells.append(format_value(m, mean, std if m.spread else None).replace(" ± ", "±"))
        table.add_row(escape(row["label"]), *cells)
    return table


def _spawn_workers(args: argparse.Namespace, run_dir: RunDir, storage: str) -> list[Any]:
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    cmd = [
        sys.executable,
        "-m",
        "reglab",
        "worker",
        "--run-dir",
        str(run_dir.path),
        "--storage",
        storage,
        "--threads",
        str(threads),
        "--heartbeat",
        str(args.heartbeat),
        "--grace",
        str(args.grace),
        "--no-progress",
    ]
    if args.no_stack:
        cmd.append("--no-stack")
    if args.tensorboard is not None:
        cmd += ["--tensorboard", str(args.tensorboard)]
    return [subprocess.Popen(cmd) for _ in range(args.jobs)]


def _study_and_dir(args: argparse.Namespace) -> tuple[Any, str, RunDir]:
    if args.resume is not None:
        given = [
            flag
            for flag, value in (
                ("STUDY", args.study),
                ("--epochs", args.epochs),
                ("--seeds", args.seeds),
                ("--out", args.out),
            )
            if value is not None
        ]
        if given:
            raise StudyError(
                f"reglab run --resume reuses the run directory's study; drop {', '.join(given)} "
                "(start a new run with --out for other settings)"
            )
        run_dir = RunDir(args.resume)
        study = run_dir.study()
        return study, run_dir.study_toml.read_text(encoding="utf-8"), run_dir
    overrides = Overrides(epochs=args.epochs, seeds=args.seeds)
    study, _, text = find_study(args.study or "default", overrides)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return study, text, RunDir(args.out or Path("runs") / f"{study.name}-{stamp}")


def run(args: argparse.Namespace) -> int:
    console = Console()
    study, text, run_dir = _study_and_dir(args)
    lock = DirectoryLock(run_dir.path)
    try:
        run_dir.remove_partial_files()
        run_dir.write_study(study, text)
        storage = args.storage or run_dir.storage_url
        sweep = Sweep.create(study, storage, args.heartbeat, args.grace)
        recovered = sweep.recover_local() if args.storage is None else 0
        total = len(sweep.trials)
        done_before = sweep.completed()
        console.print(
            f"[bold]{study.name}[/]: {len(study.points)} grid points x {len(study.seeds)} "
            f"seeds = {total} trials -> {run_dir.path}"
            + (
                f" (resuming: {done_before} done, {recovered} re-queued)"
                if done_before or recovered
                else ""
            )
        )
        start = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=args.no_progress,
            transient=True,
        ) as progress:
            trial_task = progress.add_task("trials", total=total, completed=done_before)
            if args.jobs == 1:
                if args.threads:
                    torch.set_num_threads(args.threads)
                epoch_task = progress.add_task("epochs", total=1)

                def on_trial(batch: list[Any], event: str) -> None:
                    if event == "start":
                        first = batch[0]
                        more = f" + {len(batch) - 1} stacked" if len(batch) > 1 else ""
                        progress.update(
                            trial_task,
                            description=f"{first.point.label} (seed {first.seed}){more}",
                        )
                    else:
                        progress.update(trial_task, completed=sweep.completed())

                def on_epoch(epoch: int, epochs: int) -> None:
                    progress.update(epoch_task, completed=epoch, total=epochs)

                context = TrialContext(on_epoch, args.tensorboard)
                sweep.work(run_dir, on_trial, context, stack=not args.no_stack)
            else:
                workers = _spawn_workers(args, run_dir, storage)
                while any(w.poll() is None for w in workers):
                    progress.update(trial_task, completed=sweep.completed())
                    time.sleep(1.0)
                failed = [w.returncode for w in workers if w.returncode]
                if failed:
                    raise RuntimeError(
                        f"{len(failed)} worker process(es) failed (exit codes {failed})"
                    )
        records = sweep.results()
        report = write_report(run_dir, study, records, total)
        console.print(results_table(summarize(records), f"{study.name} (mean±std over seeds)"))
        console.print(
            f"{len(records)}/{total} trials complete; {time.perf_counter() - start:.1f}"
            f" s this run. Report: {report}"
        )
        return 0 if len(records) == total else 1
    finally:
        lock.release()
