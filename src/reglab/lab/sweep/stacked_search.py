"""Stacked search: a sampled method's worker asks ``[search] batch = K`` candidates together
and trains those that can share a stack as one :class:`~reglab.ensembles.ModelStack`.

Each candidate is its own Optuna trial, asked one after another from the study's sampler
(TPE's constant liar sees the earlier ones of the batch as running trials and spreads the
later ones out), or popped from the queue when a resumed run put trials back. The candidates
are grouped by :func:`~reglab.lab.work.stacking.stack_key`: each group trains as one stack
(:func:`~reglab.lab.work.stacking.run_stacked`), a candidate that stacks with no other alone,
as in a sequential search.

Pruning is per member: after every epoch each live member reports its validation objective
to its own trial (:meth:`~reglab.lab.sweep.pruning.PruningReport.check`, the lone trials'
report), and its pruner compares it with every trial in the storage (other members, other
stacks, other workers). A pruned member stops costing compute: the stack is compacted to the
live members at that epoch's end (:mod:`reglab.lab.work.compaction`), and the others go on
unchanged. The pruned member is stored as ``PRUNED`` with its curve (intermediate values;
history and metrics of its weights at that epoch as user attributes; ``pruned_at``), as a
lone trial is.

Interrupted batches behave as lone trials: Ctrl-C puts the batch's unfinished trials back in
the queue, a killed run's are failed and re-enqueued on resume, and the next batch pops them
first. A group's members are stored when its stack ends (they share its ``stack_seconds``,
which the report counts once), so a member pruned before an interruption is trained again.
A stack in which a member diverges is trained again member by member (each reporting again
to its trial; the steps it already reported keep their first value), which names the one
that diverged.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from reglab.lab.interrupts import deferred
from reglab.lab.rundir import RunDir
from reglab.lab.settings.grid import Trial
from reglab.lab.sweep.heartbeat import Heartbeat
from reglab.lab.sweep.pruning import PruningReport
from reglab.lab.sweep.sweep import MAX_STACK
from reglab.lab.work.runner import run_trial
from reglab.lab.work.stacking import run_stacked, stack_key
from reglab.lab.work.training import TrialContext, TrialOutcome
from reglab.training import Diverged

__all__ = ["BatchSweep", "Member", "groups", "train_batch"]


class BatchSweep(Protocol):
    """What a stacked batch needs of its :class:`~reglab.lab.sweep.search.SearchSweep`: the
    queue (``_next`` pops or asks a trial, ``_spec`` its grid point and seed), the way a lone
    trial is stored and told (``_store``, ``_tell``), the storage (heartbeats), the settings
    (``pruner``) and the objective the pruner sees."""

    storage: Any
    settings: Any
    objective: Any

    def _next(self) -> optuna.Trial | None: ...

    def _spec(self, trial: optuna.Trial) -> Trial: ...

    def _tell(self, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None: ...

    def _store(
        self,
        trial: optuna.Trial,
        spec: Trial,
        outcome: TrialOutcome,
        run_dir: RunDir | None,
        report: PruningReport | None,
    ) -> None: ...


@dataclasses.dataclass(eq=False)
class Member:
    """One candidate of a batch: its running trial, its grid point and seed, and the report
    that tells its pruner each epoch (None without a pruner)."""

    trial: optuna.Trial
    spec: Trial
    report: PruningReport | None


def groups(members: list[Member]) -> list[list[Member]]:
    """The members that train together, in the order asked: one group per stack key (at most
    ``MAX_STACK`` each), and one per member that stacks with no other."""
    by_key: dict[Hashable, list[Member]] = {}
    out: list[list[Member]] = []
    for member in members:
        key = stack_key(member.spec.point.config)
        if key is None:
            out.append([member])
            continue
        group = by_key.get(key)
        if group is None or len(group) >= MAX_STACK:
            group = by_key[key] = []
            out.append(group)
        group.append(member)
    return out


def _ask(sweep: BatchSweep, k: int) -> list[Member]:
    """Up to ``k`` trials: waiting ones first, then asked from the sampler."""
    members = []
    for _ in range(k):
        trial = sweep._next()
        if trial is None:
            break
        report = None
        if sweep.settings.pruner != "none":
            report = PruningReport(trial, sweep.objective.key)
        members.append(Member(trial, sweep._spec(trial), report))
    return members


def _decide(group: list[Member]) -> Callable[[int, Mapping[int, Mapping[str, float]]], list[int]]:
    """The stack's ``decide``: each live member reports its row to its own trial."""

    def decide(step: int, rows: Mapping[int, Mapping[str, float]]) -> list[int]:
        stopped = []
        for m, row in rows.items():
            report = group[m].report
            if report is not None and report.check(row, step):
                stopped.append(m)
        return stopped

    return decide


def _alone(member: Member, context: TrialContext) -> TrialOutcome | Diverged:
    """One member trained alone, its pruner stopping it (a fresh report: a stack that
    diverged may have reported some epochs already)."""
    if member.report is not None:
        member.report = PruningReport(member.trial, member.report.name)
        context = dataclasses.replace(context, callbacks=(*context.callbacks, member.report))
    try:
        with warnings.catch_warnings():  # steps reported by the stack that diverged
            warnings.filterwarnings("ignore", "The reported value is ignored", UserWarning)
            return run_trial(member.spec.point.config, member.spec.seed, context)
    except Diverged as err:
        return err


def _train(group: list[Member], context: TrialContext) -> list[TrialOutcome | Diverged]:
    if len(group) > 1:
        pruning = any(m.report is not None for m in group)
        try:
            return list(
                run_stacked(
                    [(m.spec.point.config, m.spec.seed) for m in group],
                    context,
                    decide=_decide(group) if pruning else None,
                )
            )
        except Diverged:
            pass  # a member diverged: train each alone, which names it with its step
    return [_alone(member, context) for member in group]


def train_batch(
    sweep: BatchSweep,
    k: int,
    run_dir: RunDir | None,
    on_trial: Callable[[list[Trial], str], None] | None,
    context: TrialContext,
) -> None:
    """Ask up to ``k`` candidates, train them group by group (see the module docstring) and
    store each as :meth:`SearchSweep._store` does for a lone trial."""
    members = _ask(sweep, k)
    if not members:
        return
    specs = [m.spec for m in members]
    if on_trial is not None:
        on_trial(specs, "start")
    interval = sweep.storage.get_heartbeat_interval() or 10
    unfinished = list(members)
    with Heartbeat(sweep.storage, [m.trial._trial_id for m in members], interval):
        try:
            for group in groups(members):
                outcomes = _train(group, context)
                for member, outcome in zip(group, outcomes, strict=True):
                    _store(sweep, member, outcome, run_dir)
                    unfinished.remove(member)
        except Exception:
            for member in unfinished:
                sweep._tell(member.trial, state=TrialState.FAIL)
            raise
    if on_trial is not None:
        on_trial(specs, "done")


def _store(
    sweep: BatchSweep, member: Member, outcome: TrialOutcome | Diverged, run_dir: RunDir | None
) -> None:
    with deferred():  # a trial's files and its state change together
        if isinstance(outcome, Diverged):
            if run_dir is not None:
                run_dir.save_divergence(member.spec.key, outcome.reason)
            member.trial.set_user_attr("diverged", outcome.reason)
            sweep._tell(member.trial, state=TrialState.FAIL)
        else:
            sweep._store(member.trial, member.spec, outcome, run_dir, member.report)
