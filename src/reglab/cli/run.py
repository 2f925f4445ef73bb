"""``reglab run [STUDY]``: run a study's sweep into a run directory, then write its report."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from reglab.cli.lines import TrialLines, plain_output
from reglab.cli.options import (
    OptionError,
    add_max_trials_option,
    add_worker_options,
    positive_int,
    writable_directory,
)
from reglab.cli.tables import results_table
from reglab.lab import (
    Overrides,
    RunDir,
    Study,
    Sweep,
    Trust,
    builtin_studies,
    find_study,
    summarize,
)
from reglab.lab.report import write_report
from reglab.lab.report.pareto import front_listing
from reglab.lab.sweep import DirectoryLock, optuna_study_name
from reglab.lab.sweep.objective import choice_line, choosable
from reglab.lab.sweep.search import SearchSweep, check_sweep, sweep_class
from reglab.lab.sweep.storage import check_file, check_url, mark_store
from reglab.lab.trust import look_beside
from reglab.lab.work.device import check_study as check_device
from reglab.lab.work.heap import retain_freed_memory
from reglab.lab.work.training import TrialContext

NAME = "run"
HELP = "run a study (built-in name or TOML file; default: the embedded digits study)"


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
    add_max_trials_option(parser)
    parser.add_argument(
        "--tensorboard",
        type=Path,
        metavar="DIR",
        help="write TensorBoard event files of every trial under DIR/<trial>",
    )
    parser.add_argument(
        "--rebuild-storage",
        action="store_true",
        help="with --resume: rebuild storage.db from the trial folders (finished trials are "
        "kept, the rest run again); the new storage is built aside and replaces the old one, "
        "which is kept as storage.db.damaged-<time>, only once it is complete",
    )
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="with --rebuild-storage: leave out trials whose files cannot be read (they run "
        "again) instead of stopping",
    )
    add_worker_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _spawn_workers(
    args: argparse.Namespace, run_dir: RunDir, storage: str, trust: Trust, lock: DirectoryLock
) -> list[subprocess.Popen[bytes]]:
    """``--jobs`` worker processes. Each inherits the run directory's lock (so a resume
    waits until every one has ended) and ends with this process (``--exit-with-parent``)."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    cmd = [
        sys.executable,
        "-m",
        "reglab",
        *(["--debug"] if args.debug else []),
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
        "--db-retry",
        f"{args.db_retry}s",
        "--no-progress",
        "--exit-with-parent",
        str(os.getpid()),
    ]
    cmd += ["--device", str(args.device)]
    if args.no_stack:
        cmd.append("--no-stack")
    if args.tensorboard is not None:
        cmd += ["--tensorboard", str(args.tensorboard)]
    for module in trust.modules:
        cmd += ["--trust-factory", module]
    return [subprocess.Popen(cmd, pass_fds=(lock.fd,)) for _ in range(args.jobs)]


def _stop(workers: list[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """End the workers still running: SIGTERM (each puts its unfinished trials back in the
    queue), then SIGKILL after ``grace`` seconds."""
    for w in workers:
        if w.poll() is None:
            w.terminate()
    deadline = time.monotonic() + grace
    for w in workers:
        try:
            w.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _study_and_dir(args: argparse.Namespace) -> tuple[Study, str, RunDir, str]:
    """The study, its source text, the run directory, and the option that named it."""
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
            raise OptionError(
                f"reglab run --resume reuses the run directory's study; drop {', '.join(given)} "
                "(start a new run with --out for other settings)"
            )
        run_dir = RunDir(args.resume)
        return run_dir.study(args.max_trials), "", run_dir, "--resume"
    if args.rebuild_storage:
        raise OptionError("--rebuild-storage: rebuilds a run's storage; use it with --resume")
    overrides = Overrides(epochs=args.epochs, seeds=args.seeds)
    study, _, text = find_study(args.study or "default", overrides, args.max_trials)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return study, text, RunDir(args.out or Path("runs") / f"{study.name}-{stamp}"), "--out"


def _check_local_storage(args: argparse.Namespace, run_dir: RunDir) -> None:
    """A run directory's storage.db that is empty or damaged stops the run (never replaced
    silently), unless ``--rebuild-storage`` asks to set it aside."""
    if args.storage is not None or args.rebuild_storage:
        return
    check_file(
        run_dir.storage_db,
        "the run's results store",
        f"the finished trials' files are in {run_dir.path / 'trials'}: `reglab run --resume "
        f"{run_dir.path} --rebuild-storage` sets the file aside and rebuilds the storage "
        "from them (unfinished trials run again)",
    )


def _rebuild(
    args: argparse.Namespace, run_dir: RunDir, study: Study, name: str, console: Console
) -> None:
    """Rebuild storage.db from the trial folders: built aside, swapped in only when complete
    (the old file is kept as ``storage.db.damaged-<time>``). Unreadable trial files stop it,
    every one named, before anything changes (``--skip-unreadable``: left out, run again)."""
    finished, unreadable = run_dir.finished_trials()
    if unreadable and not args.skip_unreadable:
        raise OptionError(
            f"--rebuild-storage: {len(unreadable)} trial file(s) cannot be read: "
            f"{'; '.join(unreadable)}; nothing was changed: repair or delete them, or pass "
            "--skip-unreadable to rebuild without those trials (they run again)"
        )
    for problem in unreadable:
        console.print(f"skipped (runs again): {escape(problem)}", markup=True)
    console.print(f"rebuilding the storage from {len(finished)} finished trial folders")
    db = run_dir.storage_db
    new = db.with_name("storage.db.rebuilding")
    for leftover in (new, new.with_name(new.name + ".lock")):  # from an earlier attempt
        leftover.unlink(missing_ok=True)
    try:
        built = sweep_class(study).create(
            study, f"sqlite:///{new.resolve()}", finished=finished, name=name, alone=True
        )
        built.storage.engine.dispose()
    except BaseException:
        new.unlink(missing_ok=True)
        raise
    finally:
        new.with_name(new.name + ".lock").unlink(missing_ok=True)
    if db.exists():
        aside = db.with_name(f"storage.db.damaged-{datetime.now():%Y%m%d-%H%M%S}")
        db.rename(aside)
        console.print(f"set {escape(str(db))} aside as {aside.name}")
    new.replace(db)


def run(args: argparse.Namespace) -> int:
    console = Console()
    trust = Trust.of(args.trust_factory)
    # Every check that can fail comes before the run directory is created or written.
    if args.skip_unreadable and not args.rebuild_storage:
        raise OptionError("--skip-unreadable: use it with --resume RUN_DIR --rebuild-storage")
    if args.storage is not None:
        check_url(args.storage)
        if args.rebuild_storage:
            raise OptionError(
                "--rebuild-storage rebuilds the run directory's storage.db; drop --storage"
            )
    study, text, run_dir, option = _study_and_dir(args)
    look_beside(args.study)  # factory modules beside the study file need no PYTHONPATH
    trust.check(study)
    check_device(study, args.device)
    check_sweep(study)
    name = run_dir.optuna_study or optuna_study_name(study)
    if args.resume is not None:  # the run directory is one study: refuse edited study files
        run_dir.verify(study, name)
    _check_local_storage(args, run_dir)
    writable_directory(run_dir.path, option)
    lock = DirectoryLock(run_dir.path, wait=10.0 if args.resume else 0.0)
    workers: list[subprocess.Popen[bytes]] = []
    storage = args.storage or run_dir.storage_url
    try:
        run_dir.remove_partial_files()
        if args.resume is None:
            given = args.study or "default"
            root = "" if given in builtin_studies() else Path(given).resolve().parent
            run_dir.write_study(
                study, text, Overrides(args.epochs, args.seeds), name, args.max_trials, root
            )
        if args.rebuild_storage:
            _rebuild(args, run_dir, study, name, console)
        sweep: Sweep | SearchSweep = sweep_class(study).create(
            study,
            storage,
            args.heartbeat,
            args.grace,
            db_retry=args.db_retry,
            name=name,
            alone=args.storage is None,
        )
        searched = isinstance(sweep, SearchSweep)
        recovered = sweep.recover_local() if args.storage is None else 0
        total = len(sweep.trials)
        done_before = sweep.finished()
        console.print(
            f"[bold]{escape(study.name)}[/]: "
            + (
                f"{study.search.method} search, {total} trials so far"
                if searched
                else f"{len(study.points)} grid points x {len(study.seeds)} seeds = {total} trials"
            )
            + f" -> {escape(str(run_dir.path))}"
            + (
                f" (resuming: {done_before} finished, {total - done_before} to run"
                + (f", {recovered} of them left unfinished by a killed run" if recovered else "")
                + ")"
                if args.resume or done_before or recovered
                else ""
            )
        )
        start = time.perf_counter()
        # Without a terminal: one plain line per finished trial instead of progress bars.
        lines = TrialLines(run_dir, total, sweep.objective) if plain_output() else None
        with (
            trust.active(),
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                disable=args.no_progress or lines is not None,
                transient=True,
            ) as progress,
        ):
            trial_task = progress.add_task("trials", total=total, completed=done_before)
            if args.jobs == 1:
                if args.threads:
                    torch.set_num_threads(args.threads)
                retain_freed_memory()  # stacks' big tensors reuse their pages: no faults
                epoch_task = progress.add_task("epochs", total=1)

                began = [time.perf_counter()]

                def on_trial(batch: list[Any], event: str) -> None:
                    if event == "start":
                        began[0] = time.perf_counter()
                        first = batch[0]
                        more = f" + {len(batch) - 1} stacked" if len(batch) > 1 else ""
                        progress.update(
                            trial_task,
                            description=f"{first.point.label} (seed {first.seed}){more}",
                        )
                    else:
                        finished = sweep.finished()
                        progress.update(trial_task, completed=finished)
                        if lines is not None:
                            lines.batch(batch, finished, time.perf_counter() - began[0])

                def on_epoch(epoch: int, epochs: int) -> None:
                    progress.update(epoch_task, completed=epoch, total=epochs)

                context = TrialContext(on_epoch, args.tensorboard, args.device)
                more = {"advance": True} if searched else {}  # coarse-to-fine's next stages
                sweep.work(run_dir, on_trial, context, stack=not args.no_stack, **more)
            else:
                workers = _spawn_workers(args, run_dir, storage, trust, lock)
                while any(w.poll() is None for w in workers):
                    if isinstance(sweep, SearchSweep):
                        sweep.advance()
                    progress.update(trial_task, completed=sweep.finished())
                    if lines is not None and not searched:  # a search's lines: its workers'
                        lines.poll(sweep)
                    time.sleep(0.5)
                if lines is not None and not searched:
                    lines.poll(sweep)
        failed = [w.returncode for w in workers if w.returncode]
        total = len(sweep.trials)
        records = sweep.results()
        report = write_report(run_dir, study, records, total)
        summary = summarize(records)
        objective = sweep.objective
        console.print(
            results_table(
                summary,
                f"{study.name} (mean±std over seeds)",
                console.width,
                first=(objective.key, objective.test),
            )
        )
        candidates = choosable(summary, records)  # a pruned trial is never the choice
        grid_front = [] if searched else front_listing(study, records)
        if grid_front:  # a grid with several objectives chooses no one configuration
            console.print("\n".join(grid_front), markup=False, highlight=False)
        elif len(candidates) > 1 and not getattr(sweep, "multi_objective", False):
            console.print(escape(choice_line(candidates, objective)))  # a search's: below
        diverged = sum(1 for r in records if r["diverged"])
        pruned = sum(1 for r in records if r.get("pruned"))
        complete = len(records) - diverged - pruned
        if isinstance(sweep, SearchSweep):
            # soft_wrap: the attach call and the fragment are pasted, never wrapped
            console.print(sweep.conclude(run_dir), soft_wrap=True, markup=False, highlight=False)
        console.print(
            f"{complete}/{total} trials complete"
            + (f", {pruned} pruned" if pruned else "")
            + (f", {diverged} diverged" if diverged else "")
            + f"; {time.perf_counter() - start:.1f} s this run. Report: {escape(str(report))}"
        )
        if failed:
            print(
                f"reglab run: error: {len(failed)} worker process(es) failed (exit codes "
                f"{failed}); their messages are above",
                file=sys.stderr,
            )
        return 0 if len(records) >= total and not failed else 1
    except Exception as err:
        mark_store(err, storage)  # a database error names its file or URL
        raise
    except KeyboardInterrupt as err:
        err.hint = (
            f"unfinished trials are queued again; continue with: reglab run --resume {run_dir.path}"  # type: ignore[attr-defined]
        )
        raise
    finally:
        _stop(workers)
        lock.release()
