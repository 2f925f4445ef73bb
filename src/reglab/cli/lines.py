"""Progress as plain lines, for logs and CI: one line per finished trial.

Without a terminal a progress bar shows nothing until the run ends, so ``reglab run`` (and
``reglab worker``) print one line per trial as it finishes instead, with the key metrics —
the study's objective first, then its test metric (reported, never used to choose), then the
registry's first console metrics::

    [4/18] L2 l2=0.001 seed 1: val % 96.9  test % 96.4  train % 100.0  gap pts 3.6  (5.2 s)
    [5/18] L1 l1=0.1 seed 0: diverged (loss is nan at step 12)
    [11/18] L1L2 l1=1e-05 l2=1e-05 seed 0: val % 97.2  test % 96.1  ...  (stack of 6: 9.8 s for all)

Trials that train as one stack finish together and print together; the time is then the
stack's wall time, said as such. The numbers come from the trial's ``metrics.json`` in the
run directory (what the results table and the report read); trials finished by other worker
processes (``--jobs``) print without a time.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from reglab.lab.metrics import Metric, Objective, format_value, metric, pick

__all__ = ["TrialLines", "key_metrics", "plain_output", "trial_line"]

#: How many metrics a line shows.
SHOWN = 4


def plain_output(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout) is not a terminal: logs, pipes, CI."""
    stream = sys.stdout if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return True


def key_metrics(recorded: Iterable[str], objective: Objective, limit: int = SHOWN) -> list[Metric]:
    """The objective, its test metric, then the registry's console metrics: ``limit`` of
    those ``recorded`` (``seconds`` left out: the line states the time itself)."""
    present = set(recorded)
    keys = [k for k in (objective.key, objective.test) if k in present]
    keys += [m.key for m in pick(present, "console") if m.key not in keys and m.key != "seconds"]
    return [metric(k) for k in keys[:limit]]


def trial_line(
    done: int,
    total: int,
    label: str,
    seed: int,
    metrics: Mapping[str, Any] | None,
    objective: Objective,
    *,
    diverged: str | None = None,
    stack: int = 1,
    seconds: float | None = None,
) -> str:
    """One finished trial in one plain line (see the module); ``seconds``: the wall time of
    the trial, or of its whole stack when ``stack > 1``."""
    head = f"[{done}/{total}] {label} seed {seed}: "
    if diverged is not None:
        return head + f"diverged ({diverged})"
    if metrics is None:
        return head + "finished (no metrics file here: another machine ran it)"
    parts = []
    for m in key_metrics(metrics, objective):
        value = metrics[m.key]
        parts.append(f"{m.header} {format_value(m, math.nan if value is None else value)}")
    if stack > 1:
        tail = f"stack of {stack}" + ("" if seconds is None else f": {seconds:.1f} s for all")
    else:
        tail = "" if seconds is None else f"{seconds:.1f} s"
    return head + "  ".join(parts) + (f"  ({tail})" if tail else "")


class TrialLines:
    """Prints :func:`trial_line` for trials as they finish, each once.

    ``batch(specs)`` after a batch ran in this process; ``poll(sweep)`` for trials finished
    by other processes (``reglab run --jobs``). ``run_dir`` is where the trials' files are.
    """

    def __init__(
        self, run_dir: Any, total: int, objective: Objective, stream: TextIO | None = None
    ):
        self.run_dir, self.total, self.objective = run_dir, total, objective
        self.stream = stream
        self.seen: set[str] = set()

    def _read(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        diverged = self.run_dir.trial_file(key, "diverged.json")
        if diverged.is_file():
            return None, json.loads(diverged.read_text())["diverged"]
        path = self.run_dir.trial_file(key, "metrics.json")
        return (json.loads(path.read_text()) if path.is_file() else None), None

    def _print(
        self, trials: Sequence[Any], done: int, stack: int, seconds: float | None = None
    ) -> None:
        stream = sys.stdout if self.stream is None else self.stream
        for i, trial in enumerate(trials):
            if trial.key in self.seen:
                continue
            self.seen.add(trial.key)
            metrics, diverged = self._read(trial.key)
            line = trial_line(
                done - len(trials) + i + 1,
                self.total,
                trial.point.label,
                trial.seed,
                metrics,
                self.objective,
                diverged=diverged,
                stack=stack,
                seconds=seconds,
            )
            print(line, file=stream, flush=True)

    def batch(self, trials: Sequence[Any], done: int, seconds: float | None = None) -> None:
        """Lines for a batch this process trained (``done``: trials finished so far;
        ``seconds``: the batch's wall time)."""
        self._print(trials, done, len(trials), seconds)

    def poll(self, sweep: Any) -> None:
        """Lines for the trials of ``sweep`` finished since the last call."""
        states = sweep.states()
        finished = {k for k, s in states.items() if any(x.name == "COMPLETE" for x in s)}
        finished |= set(sweep.diverged())
        new = [sweep.trials[k] for k in sweep.trials if k in finished and k not in self.seen]
        if new:
            self._print(new, len(finished), 1)
