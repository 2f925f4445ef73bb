"""Sweeps on Optuna: every grid point x seed is one enqueued trial, run exactly once.

* :meth:`Sweep.create` — by every process that starts or joins a run — holds the storage's
  creation lock (:func:`~reglab.lab.sweep.database.creation_lock`) while it creates or loads
  the Optuna study and, unless it is marked ready, enqueues every trial that has no attempt
  yet (grouped so that trials that can train together are next to each other) and marks it
  ready. Creating and enqueueing is thus one step that any worker completes: a creator that
  died half-way released the lock, and the next worker enqueues the rest; no study stays
  "created but never enqueued". :meth:`Sweep.open` only reads: it creates and enqueues
  nothing (``reglab report``).
* A lost connection to a database server is retried with backoff for ``db_retry`` seconds
  (:func:`~reglab.lab.sweep.database.retrying`) on every storage operation, heartbeats
  included: trials in flight finish and are stored once the server is back. An operation
  whose commit was lost with the connection is safe to repeat (a repeated pop leaves a
  RUNNING trial without heartbeat, which is re-queued after the grace period; a repeated
  ``tell`` of a finished trial is skipped).
* A worker pops a *batch*: one waiting trial, and the waiting trials after it that share its
  stack key (:mod:`reglab.lab.work.stacking`), each popped atomically by ``study.ask`` (a row lock
  on PostgreSQL), so each trial still goes to exactly one worker. A batch of several trains as
  one model stack; a batch of one as before.
* Heartbeats mark a worker's trials stale when the worker dies; ``fail_stale_trials`` (run by
  every worker before each batch) fails them and ``RetryHeartbeatStaleTrialCallback``
  enqueues copies, which another worker runs. A worker exits only when nothing is waiting or
  running.
* Interrupted (Ctrl-C, SIGTERM) or failing, a worker puts the trials it popped and did not
  finish back in the queue before it exits (:mod:`reglab.lab.interrupts`); each trial's
  files and state change together, never half. Killed (SIGKILL), it leaves them RUNNING:
  a popped trial gets a heartbeat at once, so it turns stale rather than orphaned. A kill
  between the pop and that first heartbeat leaves a RUNNING trial Optuna never calls stale;
  a waiting worker fails and re-enqueues it once it has seen it without a heartbeat for the
  grace period.
* A local run directory is locked by one coordinator (and the workers it starts, which
  inherit the lock and end with it); on resume, trials left RUNNING by a killed run are
  failed and re-enqueued at once (no need to wait for the grace period), and a trial with no
  finished, waiting or running attempt (killed between failing and re-queueing it) is
  enqueued again.
* A trial whose training diverges (a non-finite loss or penalty term) is stored as FAIL with
  its reason (``diverged``) and is finished: it is not retried.
* Results (metrics and per-epoch history) are stored as trial user attributes — the one
  results store, which workers on other machines report into; files in the run directory are
  conveniences written by whoever ran the trial.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from reglab._internals.optuna import rdb_models, study_id
from reglab._io import json_safe
from reglab.lab.interrupts import deferred
from reglab.lab.metrics import strict_metrics
from reglab.lab.rundir import RunDir
from reglab.lab.settings.grid import Trial
from reglab.lab.settings.studyfile import Study
from reglab.lab.sweep.creation import StorageMismatch, create_once
from reglab.lab.sweep.database import DEFAULT_RETRY, retrying
from reglab.lab.sweep.heartbeat import Heartbeat
from reglab.lab.sweep.objective import name_metric, optuna_value, study_objective
from reglab.lab.sweep.storage import open_storage, optuna_study_name
from reglab.lab.work.runner import run_trial
from reglab.lab.work.stacking import run_stacked, stack_key
from reglab.lab.work.training import TrialContext, TrialOutcome, tensor_shapes
from reglab.training import Diverged

__all__ = ["MAX_STACK", "NoResults", "StorageMismatch", "Sweep"]


class NoResults(FileNotFoundError):
    """The storage holds no sweep of this study."""


# Optuna logs every failed trial with its traceback at WARNING; reglab reports failures itself
# (one line from the CLI, the full traceback with --debug).
optuna.logging.set_verbosity(optuna.logging.ERROR)

_KEY = "trial_key"
#: The most members one stack trains (memory grows with it; speed stops growing before).
MAX_STACK = 32


def _attrs(trial: Trial) -> dict[str, Any]:
    """What a trial's Optuna record says about it (its grid point and seed)."""
    return {
        "point": trial.point.key,
        "label": trial.point.label,
        "entry": trial.point.entry,
        "seed": trial.seed,
        "params": json.dumps(trial.point.params, default=str),
    }


class Sweep:
    """One study's sweep in one storage: enqueue, work, resume, read results."""

    def __init__(
        self,
        study: Study,
        storage: RDBStorage,
        optuna_study: optuna.Study,
        db_retry: float = DEFAULT_RETRY,
    ) -> None:
        self.study = study
        self.storage = storage
        self.optuna = optuna_study
        self.db_retry = db_retry
        self.trials = {t.key: t for t in study.trials}
        self.name = optuna_study.study_name
        #: The validation metric this sweep tells Optuna (never a test metric).
        self.objective = study_objective(study)
        self._stack_keys: dict[str, Hashable | None] = {}
        self._owned: dict[int, optuna.Trial] = {}  # popped by this process, not yet told
        self._beatless: dict[int, float] = {}  # RUNNING, no heartbeat: first seen (monotonic)

    # -- creating and opening ------------------------------------------------------------
    @classmethod
    def create(
        cls,
        study: Study,
        storage_url: str,
        heartbeat: int = 10,
        grace: int = 30,
        finished: Mapping[str, Mapping[str, Any]] | None = None,
        db_retry: float = DEFAULT_RETRY,
        name: str | None = None,
        alone: bool = False,
    ) -> Sweep:
        """The sweep of ``study``: created and enqueued if the storage has none yet, completed
        if its creator died before marking it ready, else joined. ``finished`` (from
        :meth:`RunDir.finished_trials`, to rebuild a lost storage) are added as finished
        trials instead of being enqueued. ``name``: the Optuna study's name (default
        :func:`optuna_study_name`; a run directory records the one it uses). ``alone``: the
        storage belongs to one run directory; one holding another study is refused
        (:class:`StorageMismatch`) instead of receiving a second."""
        storage = open_storage(storage_url, heartbeat, grace, db_retry=db_retry)
        name = name or optuna_study_name(study)
        objective = study_objective(study)

        def create() -> optuna.Study:
            created = optuna.create_study(
                storage=storage, study_name=name, direction=objective.direction
            )
            name_metric(created, objective)
            return created

        def complete(created: optuna.Study) -> Sweep:
            sweep = cls(study, storage, created, db_retry)
            if not created.user_attrs.get("ready"):
                sweep._enqueue_missing(finished or {})
                created.set_user_attr("ready", True)
            return sweep

        return create_once(
            storage,
            storage_url,
            name,
            db_retry,
            alone,
            create=create,
            load=lambda: optuna.load_study(storage=storage, study_name=name),
            complete=complete,
        )

    def _enqueue_missing(self, finished: Mapping[str, Mapping[str, Any]]) -> None:
        """Enqueue (or add as finished, from ``finished``) every trial with no attempt in the
        storage yet: the whole study when it is new, the rest when its creator died half-way."""
        present = {
            t.system_attrs.get("fixed_params", {}).get(_KEY)
            for t in self.optuna.get_trials(deepcopy=False)
        }
        for trial in self._enqueue_order():
            if trial.key in present:
                continue
            if trial.key in finished:
                self._add_finished(trial, finished[trial.key])
            else:
                self.optuna.enqueue_trial({_KEY: trial.key}, user_attrs=_attrs(trial))

    def _add_finished(self, trial: Trial, files: Mapping[str, Any]) -> None:
        """Add a trial finished earlier (its files' record) as a COMPLETE or diverged one."""
        attrs = {**_attrs(trial), "rebuilt": True}
        if "diverged" in files:
            state, value = TrialState.FAIL, None
            attrs["diverged"] = files["diverged"]
        else:
            state, value = TrialState.COMPLETE, optuna_value(files["metrics"], self.objective)
            attrs.update(
                metrics=files["metrics"], history=files["history"], tensors=files["tensors"]
            )
        self.optuna.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params={_KEY: trial.key},
                distributions={_KEY: CategoricalDistribution(list(self.trials))},
                user_attrs=attrs,
                system_attrs={"fixed_params": {_KEY: trial.key}},
            )
        )

    @classmethod
    def open(cls, study: Study, storage_url: str, name: str | None = None) -> Sweep:
        """The existing sweep of ``study``, read only: nothing is created or enqueued."""
        storage = open_storage(storage_url, read_only=True)
        name = name or optuna_study_name(study)
        try:
            loaded = optuna.load_study(storage=storage, study_name=name)
        except KeyError:
            raise NoResults(f"the storage holds no sweep of this study ({name})") from None
        return cls(study, storage, loaded)

    def stack_key(self, trial: Trial) -> Hashable | None:
        key = trial.point.key
        if key not in self._stack_keys:
            self._stack_keys[key] = stack_key(trial.point.config)
        return self._stack_keys[key]

    def _enqueue_order(self) -> list[Trial]:
        """Study order, with the trials of one stack key next to each other (stable)."""
        first: dict[Any, int] = {}
        order = []
        for i, trial in enumerate(self.study.trials):
            group = self.stack_key(trial)
            group = ("alone", i) if group is None else group
            order.append((first.setdefault(group, i), i, trial))
        return [t for *_, t in sorted(order, key=lambda item: item[:2])]

    # -- the database --------------------------------------------------------------------
    def _db(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, retried while the database server is unreachable."""
        return retrying(call, *args, seconds=self.db_retry, url=self.storage.url, **kwargs)

    def _trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        return self._db(self.optuna.get_trials, deepcopy=False, states=states)

    # -- state ---------------------------------------------------------------------------
    def states(self) -> dict[str, list[TrialState]]:
        """Every trial key -> the states of its Optuna trials (attempts)."""
        out: dict[str, list[TrialState]] = {k: [] for k in self.trials}
        for t in self._trials():
            key = t.system_attrs.get("fixed_params", {}).get(_KEY)
            if key in out:
                out[key].append(t.state)
        return out

    def completed(self) -> int:
        return sum(TrialState.COMPLETE in s for s in self.states().values())

    def diverged(self) -> dict[str, str]:
        """Trial key -> reason, for the trials whose training diverged (stored as FAIL with a
        ``diverged`` reason; never retried: a seeded trial would diverge again)."""
        done = {k for k, s in self.states().items() if TrialState.COMPLETE in s}
        out = {}
        for t in self._trials((TrialState.FAIL,)):
            key = t.system_attrs.get("fixed_params", {}).get(_KEY)
            if key in self.trials and key not in done and "diverged" in t.user_attrs:
                out.setdefault(key, t.user_attrs["diverged"])
        return out

    def finished(self) -> int:
        """Trials that completed or diverged: nothing more to run for them."""
        return self.completed() + len(self.diverged())

    def _requeue(self, trials: list[FrozenTrial]) -> int:
        """Mark RUNNING trials FAIL and enqueue a fresh copy of each; returns how many."""
        requeued = 0
        for t in trials:
            key = t.system_attrs.get("fixed_params", {}).get(_KEY)
            if self._db(self.storage.get_trial, t._trial_id).state != TrialState.RUNNING:
                continue
            try:
                self._db(self.storage.set_trial_user_attr, t._trial_id, "interrupted", True)
                failed = self._db(
                    self.storage.set_trial_state_values, t._trial_id, state=TrialState.FAIL
                )
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker finished or re-queued it meanwhile
            if failed and key is not None:
                self._db(self.optuna.enqueue_trial, {_KEY: key}, user_attrs=dict(t.user_attrs))
                requeued += 1
        return requeued

    def recover_local(self) -> int:
        """Fail and re-enqueue trials left RUNNING by a killed coordinator, and enqueue trials
        that were lost (only safe when this process holds the run directory's lock, and so no
        worker of it runs); returns how many."""
        running = self._trials((TrialState.RUNNING,))
        return self._requeue(running) + self._enqueue_lost()

    def _enqueue_lost(self) -> int:
        """Enqueue a fresh copy of every trial with no COMPLETE, WAITING or RUNNING attempt
        that did not diverge: a process killed between failing an interrupted trial and
        enqueueing its copy, or a stale trial past Optuna's retry limit. Not safe while
        another worker may do the same (it could enqueue a trial twice)."""
        live = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
        alive = {
            t.system_attrs.get("fixed_params", {}).get(_KEY)
            for t in self._trials()
            if t.state in live or (t.state == TrialState.FAIL and "diverged" in t.user_attrs)
        }
        lost = [trial for key, trial in self.trials.items() if key not in alive]
        for trial in lost:
            self.optuna.enqueue_trial({_KEY: trial.key}, user_attrs=_attrs(trial))
        return len(lost)

    def _release(self) -> int:
        """Put the trials this process popped and did not finish back in the queue (on an
        interrupt or an error), so no one waits for their heartbeats to go stale."""
        owned = [self._db(self.storage.get_trial, i) for i in self._owned]
        self._owned.clear()
        return self._requeue(owned)

    def _running_without_heartbeat(self) -> set[int]:
        """RUNNING trials of this study that never got a heartbeat (Optuna's public API does
        not say; its heartbeat table does)."""
        from sqlalchemy import orm, select

        models = rdb_models()
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        query = (
            select(trial.trial_id)
            .outerjoin(beat, beat.trial_id == trial.trial_id)
            .where(trial.study_id == study_id(self.optuna))
            .where(trial.state == TrialState.RUNNING)
            .where(beat.trial_heartbeat_id.is_(None))
        )

        def query_ids() -> set[int]:
            with orm.Session(self.storage.engine) as session:
                return set(session.scalars(query))

        return self._db(query_ids)

    def _recover_orphans(self) -> int:
        """Fail and re-enqueue trials that have stayed RUNNING without a heartbeat for the
        grace period since this worker first saw them (their worker died between popping them
        and their first heartbeat); returns how many. Measured on this worker's clock, so
        machines' clocks need not agree."""
        now = time.monotonic()
        beatless = self._running_without_heartbeat() - set(self._owned)
        self._beatless = {i: self._beatless.get(i, now) for i in beatless}
        grace = self.storage.grace_period or 2 * (self.storage.get_heartbeat_interval() or 10)
        orphans = [i for i, seen in self._beatless.items() if now - seen > grace]
        for i in orphans:
            del self._beatless[i]
        return self._requeue([self._db(self.storage.get_trial, i) for i in orphans])

    def _remaining(self) -> tuple[int, int]:
        waiting = running = 0
        for t in self._trials((TrialState.WAITING, TrialState.RUNNING)):
            if t.state == TrialState.WAITING:
                waiting += 1
            else:
                running += 1
        return waiting, running

    # -- work ----------------------------------------------------------------------------
    def _pop(self) -> tuple[optuna.Trial, Trial] | None:
        """The next waiting trial, popped (RUNNING, ours, with a first heartbeat so that a
        kill from here on leaves it stale, not orphaned), or None when none is waiting."""
        with deferred(), warnings.catch_warnings():  # heartbeats: this class keeps them
            warnings.simplefilter("ignore", UserWarning)
            trial = self._db(self.optuna.ask)
            key = (
                self._db(self.storage.get_trial_system_attrs, trial._trial_id)
                .get("fixed_params", {})
                .get(_KEY)
            )
            if key not in self.trials:  # the queue was empty: ask() made a fresh trial
                self._db(self.optuna.tell, trial, state=TrialState.PRUNED, skip_if_finished=True)
                return None
            self._db(self.storage.record_heartbeat, trial._trial_id)
            self._owned[trial._trial_id] = trial
        trial.suggest_categorical(_KEY, list(self.trials))
        return trial, self.trials[key]

    def _tell(self, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None:
        # skip_if_finished: a repeat of a tell whose commit was lost with the connection
        self._db(self.optuna.tell, trial, *args, skip_if_finished=True, **kwargs)
        self._owned.pop(trial._trial_id, None)

    def _batch(
        self, carried: tuple[optuna.Trial, Trial] | None, stack: bool
    ) -> tuple[list[tuple[optuna.Trial, Trial]], tuple[optuna.Trial, Trial] | None]:
        """A batch to train together, and the trial popped after it that belongs to the next
        batch (already ours)."""
        first = carried or self._pop()
        if first is None:
            return [], None
        batch = [first]
        group = self.stack_key(first[1]) if stack else None
        while group is not None and len(batch) < MAX_STACK:
            following = self._pop()
            if following is None:
                return batch, None
            if self.stack_key(following[1]) != group:
                return batch, following
            batch.append(following)
        return batch, None

    def work(
        self,
        run_dir: RunDir | None = None,
        on_trial: Callable[[list[Trial], str], None] | None = None,
        context: TrialContext | None = None,
        stack: bool = True,
        poll: float = 1.0,
    ) -> None:
        """Run waiting trials until none is waiting or running (stale ones are retried).
        ``stack=False`` trains every trial alone."""
        context = context or TrialContext()
        stack = stack and context.tensorboard is None  # TensorBoard logs trials one by one
        carried = None
        try:
            while True:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self._db(fail_stale_trials, self.optuna)
                batch, carried = self._batch(carried, stack)
                if batch:
                    self._run(batch, carried, run_dir, on_trial, context)
                    continue
                waiting, running = self._remaining()
                if waiting:
                    continue
                if not running:
                    return
                self._recover_orphans()
                time.sleep(poll)  # others' trials: wait until they finish or turn stale
        except BaseException:  # Ctrl-C, SIGTERM, an error: our unfinished trials go back
            with deferred():
                self._release()
            raise

    def _run(
        self,
        batch: list[tuple[optuna.Trial, Trial]],
        carried: tuple[optuna.Trial, Trial] | None,
        run_dir: RunDir | None,
        on_trial: Callable[[list[Trial], str], None] | None,
        context: TrialContext,
    ) -> None:
        specs = [spec for _, spec in batch]
        ids = [t._trial_id for t, _ in batch] + ([carried[0]._trial_id] if carried else [])
        if on_trial is not None:
            on_trial(specs, "start")
        interval = self.storage.get_heartbeat_interval() or 10
        with Heartbeat(self.storage, ids, interval, self.db_retry):
            try:
                outcomes = self._train(specs, context)
            except Exception:
                for trial, _ in batch:
                    self._tell(trial, state=TrialState.FAIL)
                raise
        for (trial, spec), outcome in zip(batch, outcomes, strict=True):
            with deferred():  # a trial's files and its state change together
                if isinstance(outcome, Diverged):
                    self._store_divergence(trial, spec, outcome.reason, run_dir)
                else:
                    self._store(trial, spec, outcome, run_dir)
        if on_trial is not None:
            on_trial(specs, "done")

    def _train(self, specs: list[Trial], context: TrialContext) -> list[TrialOutcome | Diverged]:
        if len(specs) > 1:
            try:
                return list(run_stacked([(s.point.config, s.seed) for s in specs], context))
            except Diverged:
                pass  # a member diverged: train each alone, which names it with its step
        return [self._alone(spec, context) for spec in specs]

    @staticmethod
    def _alone(spec: Trial, context: TrialContext) -> TrialOutcome | Diverged:
        if context.tensorboard is not None:  # one event folder per trial
            context = dataclasses.replace(context, tensorboard=Path(context.tensorboard) / spec.key)
        try:
            return run_trial(spec.point.config, spec.seed, context)
        except Diverged as err:
            return err

    def _store(
        self, trial: optuna.Trial, spec: Trial, outcome: TrialOutcome, run_dir: RunDir | None
    ) -> None:
        metrics = strict_metrics(outcome.metrics)
        if run_dir is not None:
            run_dir.save_trial(spec.key, outcome, metrics)
        attrs = {
            "metrics": metrics,
            "history": json_safe(outcome.history),
            "reliability": json_safe(outcome.reliability),
            "tensors": tensor_shapes(outcome.model),
        }
        if "stacked" in outcome.extra:
            attrs["stacked"] = outcome.extra["stacked"]
        for name, value in attrs.items():
            self._db(trial.set_user_attr, name, value)
        self._tell(trial, optuna_value(metrics, self.objective))

    def _store_divergence(
        self, trial: optuna.Trial, spec: Trial, reason: str, run_dir: RunDir | None
    ) -> None:
        if run_dir is not None:
            run_dir.save_divergence(spec.key, reason)
        self._db(trial.set_user_attr, "diverged", reason)
        self._tell(trial, state=TrialState.FAIL)

    # -- results -------------------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        """One record per finished trial key, in study order: key, point, label, entry, seed,
        params, metrics, history, reliability, tensors (``{name: shape}`` of the trained
        model), and ``diverged`` (the reason; its metrics and history are empty)."""
        records: dict[str, dict[str, Any]] = {}
        for t in self._trials((TrialState.COMPLETE,)):
            key = t.params.get(_KEY)
            if key is None or key in records or key not in self.trials:
                continue
            records[key] = {
                **self._describe(key),
                "metrics": t.user_attrs["metrics"],
                "history": t.user_attrs["history"],
                "reliability": t.user_attrs.get("reliability"),
                "tensors": t.user_attrs.get("tensors"),
                "diverged": None,
            }
        for key, reason in self.diverged().items():
            records.setdefault(
                key,
                {
                    **self._describe(key),
                    "metrics": {},
                    "history": [],
                    "reliability": None,
                    "tensors": None,
                    "diverged": reason,
                },
            )
        return [records[k] for k in self.trials if k in records]

    def _describe(self, key: str) -> dict[str, Any]:
        spec = self.trials[key]
        return {
            "key": key,
            "point": spec.point.key,
            "label": spec.point.label,
            "entry": spec.point.entry,
            "seed": spec.seed,
            "params": spec.point.params,
        }
