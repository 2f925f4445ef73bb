"""``reglab run``: train the embedded default study and print what each regularizer did."""

from __future__ import annotations

import argparse
import time

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from reglab._validation import invalid
from reglab.lab.default_study import DEFAULT_GRID, Row, run_default_study, summarize

NAME = "run"
HELP = "train the default study (digits, 64-256-256-10 MLP, 8 regularizers x seeds)"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=_positive_int, default=30, help="epochs per trial (30)")
    parser.add_argument("--seeds", type=_positive_int, default=3, help="seeds per config (3)")
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="CONFIG",
        help="run only this config (repeatable); see the table for names",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def table(rows: list[Row]) -> Table:
    """The results table: mean ± std over seeds for each config."""
    out = Table(
        title="reglab default study: digits, MLP 64-256-256-10, Adam (mean±std over seeds)",
        box=box.SIMPLE_HEAD,
    )
    out.add_column("config", no_wrap=True)
    for column in ("train %", "test %", "gap pts", "zeros %", "‖W‖₂", "s"):
        out.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        m = row.metrics

        def pct(key: str, m: dict[str, tuple[float, float]] = m) -> str:
            return f"{100 * m[key][0]:.1f}±{100 * m[key][1]:.1f}"

        out.add_row(
            row.config,
            pct("train_acc"),
            pct("test_acc"),
            pct("gap"),
            pct("zero_frac"),
            f"{m['weight_norm'][0]:.1f}",
            f"{m['seconds'][0]:.1f}",
        )
    return out


def run(args: argparse.Namespace) -> int:
    grid = DEFAULT_GRID
    if args.only:
        names = [name for name, _ in DEFAULT_GRID]
        unknown = [c for c in args.only if c not in names]
        if unknown:
            raise invalid("--only", "reglab run", f"one of {names}", unknown[0])
        grid = tuple(g for g in DEFAULT_GRID if g[0] in args.only)
    console = Console()
    total = len(grid) * args.seeds
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
        task = progress.add_task("trials", total=total)

        def on_trial(config: str, seed: int, _result: object) -> None:
            progress.update(task, advance=1, description=f"{config} (seed {seed})")

        results = run_default_study(
            epochs=args.epochs, seeds=range(args.seeds), grid=grid, on_trial=on_trial
        )
    console.print(table(summarize(results)))
    console.print(
        f"{total} trials in {time.perf_counter() - start:.1f} s. gap = train − test accuracy; "
        "zeros = exactly-zero hidden ReLU outputs on the test set; s = training seconds."
    )
    return 0
