"""``reglab run [STUDY]``: run a study's sweep into a run directory, then write its report."""

from __future__ import annotations

import argparse
import copy
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from reglab.lab import RunDir, Sweep, expand, find_study, parse_study, summarize
from reglab.lab.report import write_report
from reglab.lab.sweep import DirectoryLock

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
        default="default",
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


def apply_overrides(raw: dict[str, Any], epochs: int | None, seeds: int | None) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    if epochs is not None:
        raw.setdefault("train", {})["epochs"] = epochs
        for entry in raw.get("grid", []):
            entry.get("train", {}).pop("epochs", None)
    if seeds is not None:
        raw["seeds"] = list(raw.get("seeds", [0, 1, 2]))[:seeds]
    return raw


_CONSOLE_COLUMNS = (
    ("train_acc", "train %", 100, 1, False),
    ("test_acc", "test %", 100, 1, True),
    ("gap", "gap", 100, 1, True),
    ("test_ece", "ECE %", 100, 1, False),
    ("test_ece_ts", "ECE T %", 100, 1, False),
    ("test_acc_mc", "MC %", 100, 1, False),
    ("probe_test_acc", "probe %", 100, 1, True),
    ("test_mse", "test MSE", 1, 3, True),
    ("valid_ppl", "valid ppl", 1, 1, True),
    ("test_ppl", "test ppl", 1, 1, True),
    ("act_sq", "E[h²]", 1, 4, False),
    ("act_diff_sq", "E[Δh²]", 1, 5, False),
    ("train_mse", "train MSE", 1, 3, False),
    ("equiv_l2", "equiv L2", 1, 4, False),
    ("mean_member_acc", "member %", 100, 1, False),
    ("test_recon", "recon", 1, 3, True),
    ("fvu", "FVU", 1, 3, False),
    ("l0", "L0", 1, 1, False),
    ("zero_frac", "zeros %", 100, 0, False),
    ("weight_norm", "‖W‖", 1, 1, False),
    ("seconds", "s", 1, 1, False),
)


def results_table(summary: list[dict[str, Any]], title: str) -> Table:
    """Console table: mean±std over seeds (mean only for the last columns); the full table is
    in the run's summary.md and report.html."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("config", no_wrap=True, max_width=22)
    recorded = {k for row in summary for k in row["metrics"]}
    columns = [c for c in _CONSOLE_COLUMNS if c[0] in recorded][:7]
    for _, header, _, _, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for row in summary:
        cells = []
        for key, _, scale, decimals, spread in columns:
            mean, std = row["metrics"].get(key, (float("nan"), 0.0))
            if math.isnan(mean):  # not measured for this configuration
                cells.append("–")
                continue
            text = f"{scale * mean:.{decimals}f}"
            cells.append(f"{text}±{scale * std:.{decimals}f}" if spread else text)

        table.add_row(row["label"], *cells)
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
    return [subprocess.Popen(cmd) for _ in range(args.jobs)]


def run(args: argparse.Namespace) -> int:
    console = Console()
    if args.resume is not None:
        run_dir = RunDir(args.resume)
        raw = run_dir.study_raw()
        text = (run_dir.path / "study.toml").read_text()
        study = parse_study(raw, raw.get("name", "study"))
    else:
        study, raw, text = find_study(args.study)
        raw = apply_overrides(raw, args.epochs, args.seeds)
        study = parse_study(raw, study.name)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = RunDir(args.out or Path("runs") / f"{study.name}-{stamp}")
    lock = DirectoryLock(run_dir.path)
    try:
        points = expand(study)
        run_dir.remove_partial_files()
        run_dir.write_study(
            raw,
            text,
            [
                {"key": p.key, "label": p.label, "params": p.params, "config": p.config}
                for p in points
            ],
        )
        storage = args.storage or run_dir.storage_url
        sweep = Sweep(study, storage, run_dir, args.heartbeat, args.grace)
        recovered = sweep.recover_local() if args.storage is None else 0
        total = len(sweep.trials)
        done_before = sweep.completed()
        console.print(
            f"[bold]{study.name}[/]: {len(points)} grid points x {len(study.seeds)} "
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

                def on_trial(trial: Any, event: str) -> None:
                    if event == "start":
                        progress.update(
                            trial_task, description=f"{trial.point.label} (seed {trial.seed})"
                        )
                    else:
                        progress.update(trial_task, completed=sweep.completed())

                def on_epoch(epoch: int, epochs: int) -> None:
                    progress.update(epoch_task, completed=epoch, total=epochs)

                sweep.work(on_trial, on_epoch)
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
        report = write_report(run_dir.path, study, records, total)
        console.print(results_table(summarize(records), f"{study.name} (mean±std over seeds)"))
        console.print(
            f"{len(records)}/{total} trials complete; {time.perf_counter() - start:.1f}"
            f" s this run. Report: {report}"
        )
        return 0 if len(records) == total else 1
    finally:
        lock.release()
