"""Stacked search: K candidates asked from the sampler together, trained as one stack, told
back member by member, and pruned member by member.

The loop a worker runs (``train_epoch`` / ``validate`` stand for the stack's training)::

    batch = ask_batch(study, space, k)                     # K running trials
    alive = [True] * k
    for epoch in range(1, epochs + 1):
        train_epoch(stack, alive)                          # pruned members' work is skipped
        scores = validate(stack)                           # K validation metrics
        alive = report_members(batch, scores, epoch, alive)
    tell_batch(study, batch, final_scores, alive)

Each member is its own Optuna trial: the pruner compares its curve with every other trial's
(in other stacks and other workers too), and a pruned member is told ``PRUNED`` with its curve
(Optuna keeps the reported intermediate values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from reglab.lab.search.axes import SearchSpace, suggest

__all__ = ["Candidate", "ask_batch", "report_members", "tell_batch"]


@dataclass(frozen=True)
class Candidate:
    """One member of a batch: its running Optuna trial and its settings."""

    trial: optuna.Trial
    params: dict[str, Any]


def ask_batch(study: optuna.Study, space: SearchSpace, k: int) -> list[Candidate]:
    """``k`` candidates asked one after another (``study.ask()``): each later ask sees the
    earlier ones as running trials (TPE's constant liar spreads them out)."""
    batch = []
    for _ in range(k):
        trial = study.ask()
        batch.append(Candidate(trial, suggest(trial, space)))
    return batch


def report_members(
    batch: Sequence[Candidate],
    values: Sequence[float],
    step: int,
    alive: Sequence[bool] | None = None,
) -> list[bool]:
    """Report each live member's intermediate ``values[i]`` at ``step`` (epochs done) and
    ask its pruner; returns which members are still alive (pruned ones stay pruned)."""
    alive = [True] * len(batch) if alive is None else list(alive)
    if len(values) != len(batch) or len(alive) != len(batch):
        raise ValueError(
            f"report_members: {len(batch)} members, {len(values)} values, {len(alive)} flags"
        )
    out = []
    for candidate, value, live in zip(batch, values, alive, strict=True):
        if not live:
            out.append(False)
            continue
        candidate.trial.report(float(value), step)
        out.append(not candidate.trial.should_prune())
    return out


def tell_batch(
    study: optuna.Study,
    batch: Sequence[Candidate],
    values: Sequence[float | Sequence[float] | None],
    alive: Sequence[bool] | None = None,
) -> list[optuna.trial.FrozenTrial]:
    """Finish every member: ``COMPLETE`` with ``values[i]`` (a list with several objectives),
    ``PRUNED`` where ``alive[i]`` is False, ``FAIL`` where ``values[i]`` is None."""
    alive = [True] * len(batch) if alive is None else list(alive)
    finished = []
    for candidate, value, live in zip(batch, values, alive, strict=True):
        if not live:
            finished.append(study.tell(candidate.trial, state=TrialState.PRUNED))
        elif value is None:
            finished.append(study.tell(candidate.trial, state=TrialState.FAIL))
        else:
            finished.append(study.tell(candidate.trial, value))
    return finished
