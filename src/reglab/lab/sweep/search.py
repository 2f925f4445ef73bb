"""Searches on Optuna: a study whose ``[search] method`` is not ``"grid"``.

:class:`SearchSweep` has :class:`~reglab.lab.sweep.sweep.Sweep`'s interface (``create``,
``open``, ``work``, ``recover_local``, ``results``); :func:`sweep_class` picks one of the two
for a study, and the CLI asks it. Every trial trains one configuration of the study's one
searched entry (:mod:`reglab.lab.search.entry`) with one seed:

* **Sampled** (``tpe``, ``random``, ``qmc``): each worker asks the study's sampler (seeded,
  :func:`reglab.lab.search.get_method`) for a configuration while fewer than ``trials`` are
  finished or running, and trains it with the study's first seed. Pruning (``pruner``): the
  trial reports :func:`objective_value` after every epoch (:class:`PruningReport`) and stops
  when the pruner says so; it is stored as ``PRUNED`` with its curve (Optuna's intermediate
  values, and its history and metrics as user attributes) and counts as finished: never
  retried. Two workers that find ``trials - 1`` finished at the same instant can both start
  one: a search may run a trial or two more than ``trials`` (as Optuna's
  ``MaxTrialsCallback``). ``batch = K``: a worker asks K candidates at once and trains those
  that share a stack key as one stack, pruned member by member
  (:mod:`reglab.lab.sweep.stacked_search`). With several ``[search] objectives`` the Optuna
  study has one direction per objective (named with ``set_metric_names``), each trial is told
  its metrics as measured, and the run ends with the Pareto front (:meth:`SearchSweep.front`,
  :mod:`reglab.lab.sweep.front`) instead of one chosen configuration.
* **Coarse-to-fine**: stage 1's points (:func:`reglab.lab.search.first_stage`) times every seed
  are enqueued when the study is created; once a stage is finished, the coordinator (``reglab
  run``, which holds the run directory's lock) enqueues the next
  (:func:`reglab.lab.search.next_stage`, on each point's objective averaged over seeds).
  Every trial records its ``stage``; the study records the stages enqueued and ``done``.
  A worker pops a stage's waiting trials that share a stack key together and trains them as
  one :class:`~reglab.ensembles.ModelStack` (:func:`~reglab.lab.work.stacking.run_stacked`),
  as a grid's are; ``--no-stack`` trains each alone.
  ``reglab worker`` processes train what is queued and wait for the next stage until the study
  is done.

* **PBT** (``pbt``): one trial per seed, each training the whole population as one stack
  (:mod:`reglab.lab.sweep.pbt_run`).

Resume: a trial left RUNNING by a killed run, or put back by an interrupted worker, is failed
and enqueued again with its parameters, seed and stage (stale ones by Optuna's heartbeat
retry); COMPLETE, PRUNED and diverged trials are final.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from reglab._io import json_safe
from reglab.lab.interrupts import deferred
from reglab.lab.metrics import Objective, strict_metrics
from reglab.lab.rundir import RunDir
from reglab.lab.search import (
    ParetoPoint,
    first_stage,
    get_method,
    make_pruner,
    next_stage,
    pareto_front,
    stored_params,
    suggest,
)
from reglab.lab.search.settings import SAMPLED
from reglab.lab.settings.grid import Trial
from reglab.lab.settings.schema import StudyError
from reglab.lab.settings.studyfile import Study
from reglab.lab.sweep.conclusion import choose, conclusion
from reglab.lab.sweep.creation import create_once
from reglab.lab.sweep.database import DEFAULT_RETRY
from reglab.lab.sweep.front import front_conclusion
from reglab.lab.sweep.heartbeat import Heartbeat
from reglab.lab.sweep.objective import named_objective, study_objective
from reglab.lab.sweep.objective import objective_value as optuna_objective_value
from reglab.lab.sweep.pbt_run import (
    check_population_stacks,
    population_conclusion,
    population_records,
    population_spec,
    run_population,
)
from reglab.lab.sweep.pruning import PruningReport, objective_value
from reglab.lab.sweep.stacked_search import train_batch
from reglab.lab.sweep.storage import open_storage, optuna_study_name
from reglab.lab.sweep.sweep import MAX_STACK, NoResults, Sweep
from reglab.lab.work.runner import run_trial
from reglab.lab.work.stacking import run_stacked, stack_key
from reglab.lab.work.training import TrialContext, TrialOutcome, tensor_shapes
from reglab.training import Diverged

__all__ = [
    "PruningReport",
    "SearchSweep",
    "check_sweep",
    "objective_value",
    "sweep_class",
]  # re-exported


def sweep_class(study: Study) -> type[Sweep] | type[SearchSweep]:
    """The sweep that runs ``study``: :class:`Sweep` for grids, else :class:`SearchSweep`."""
    return Sweep if study.searched is None else SearchSweep


def check_sweep(study: Study) -> None:
    """Raise a one-line :class:`StudyError` for what the sweep of ``study`` cannot run and
    parsing cannot see (a PBT population that does not stack): before any run directory,
    storage or trial exists."""
    if study.searched is not None and get_method(study.search.method).stacks_population:
        check_population_stacks(study)


def _objectives(study: Study) -> list[Objective]:
    """The search's objectives: ``[search] objectives``, else the study's one."""
    names = study.search.objectives
    return [named_objective(n) for n in names] if names else [study_objective(study)]


def _directions(study: Study) -> dict[str, Any]:
    """``create_study``'s direction(s): one objective is maximised (:func:`objective_value`
    negates a lower-is-better metric); several keep their metrics as measured, one direction
    each (Optuna's multi-objective study, named with ``set_metric_names``)."""
    objectives = _objectives(study)
    if len(objectives) == 1:
        return {"direction": "maximize"}
    return {"directions": [o.direction for o in objectives]}


def _finished(t: FrozenTrial) -> bool:
    """COMPLETE, PRUNED or diverged: nothing more to run for it."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and "diverged" in t.user_attrs
    )


class SearchSweep:
    """One searched study in one storage (see the module docstring)."""

    def __init__(self, study: Study, storage: RDBStorage, optuna_study: optuna.Study) -> None:
        if study.searched is None:
            raise ValueError(f"study {study.name!r} has no searched entry (method 'grid')")
        self.study, self.storage, self.optuna = study, storage, optuna_study
        self.settings = study.search
        self.entry = study.searched
        self.name = optuna_study.study_name
        self.sampled = self.settings.method in SAMPLED
        #: PBT: one trial per seed trains the whole population (:mod:`.pbt_run`)
        self.population = get_method(self.settings.method).stacks_population
        #: what the search chooses on: ``[search] objectives[0]``, else the family's default
        #: validation metric (:mod:`reglab.lab.sweep.objective`, the sweep's one home)
        self.objective = study_objective(study)
        #: every objective, in the study's order (one, unless multi-objective)
        self.objectives = _objectives(study)
        self.multi_objective = len(self.objectives) > 1
        self._owned: dict[int, optuna.Trial] = {}

    # -- creating and opening ------------------------------------------------------------
    @classmethod
    def _load_args(cls, study: Study) -> dict[str, Any]:
        settings = study.search
        sampler = get_method(settings.method).sampler(settings)
        if sampler is None:  # the lab enqueues every point; a fresh ask() samples nothing
            sampler = optuna.samplers.RandomSampler(seed=settings.seed)
        epochs = study.searched.epochs if study.searched is not None else 1
        return {"sampler": sampler, "pruner": make_pruner(settings.pruner, epochs)}

    @classmethod
    def create(
        cls,
        study: Study,
        storage_url: str,
        heartbeat: int = 10,
        grace: int = 30,
        finished: Mapping[str, Any] | None = None,
        db_retry: float = DEFAULT_RETRY,
        name: str | None = None,
        alone: bool = False,
    ) -> SearchSweep:
        """The search of ``study``: created (coarse-to-fine: stage 1 enqueued) if the storage
        has none yet, completed if its creator died before marking it ready, else joined.
        ``name`` and ``alone`` as in :meth:`Sweep.create` (one locked creation step, so
        concurrent workers on a new storage never race)."""
        if finished is not None:
            raise StudyError(
                "--rebuild-storage rebuilds grid sweeps; a search's choices live in its storage"
            )
        check_sweep(study)  # before the storage: a one-line error
        storage = open_storage(storage_url, heartbeat, grace, db_retry=db_retry)
        name = name or optuna_study_name(study)
        args = cls._load_args(study)

        def complete(created: optuna.Study) -> SearchSweep:
            sweep = cls(study, storage, created)
            if not created.user_attrs.get("ready"):
                created.set_user_attr("method", study.search.method)
                if sweep.multi_objective:
                    with warnings.catch_warnings():  # an experimental Optuna API
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        created.set_metric_names([o.name for o in sweep.objectives])
                if not sweep.sampled and not created.get_trials(deepcopy=False):
                    first = [{}] if sweep.population else first_stage(sweep.entry.space)
                    sweep._enqueue_stage(1, first)  # PBT: one population per seed
                created.set_user_attr("ready", True)
            return sweep

        return create_once(
            storage,
            storage_url,
            name,
            db_retry,
            alone,
            create=lambda: optuna.create_study(
                storage=storage, study_name=name, **_directions(study), **args
            ),
            load=lambda: optuna.load_study(storage=storage, study_name=name, **args),
            complete=complete,
        )

    @classmethod
    def open(cls, study: Study, storage_url: str, name: str | None = None) -> SearchSweep:
        """The existing search of ``study``, read only: nothing is created or enqueued."""
        storage = open_storage(storage_url, read_only=True)
        name = name or optuna_study_name(study)
        try:
            loaded = optuna.load_study(storage=storage, study_name=name, **cls._load_args(study))
        except KeyError:
            raise NoResults(f"the storage holds no sweep of this study ({name})") from None
        return cls(study, storage, loaded)

    # -- the queue -----------------------------------------------------------------------
    def _stored(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Settings as Optuna stores them (by-index choices as indices)."""
        out = {}
        for a in self.entry.space.axes:
            if a.name not in params:  # PBT's trials: no parameters (a population per seed)
                continue
            value = params[a.name]
            out[a.name] = a.choices.index(value) if a.by_index else value
        return out

    def _enqueue_stage(self, stage: int, points: list[dict[str, Any]]) -> None:
        """Record stage ``stage``'s plan (its points), then enqueue it."""
        self.optuna.set_user_attr(f"stage{stage}", [self._stored(p) for p in points])
        self.optuna.set_user_attr("stage", stage)
        self._enqueue_missing(stage)

    def _enqueue_missing(self, stage: int) -> int:
        """Enqueue every planned point x seed of ``stage`` that has no trial (finished,
        waiting, running or diverged): the whole stage the first time; after a process died
        while enqueueing, or between failing an interrupted trial and re-queueing it, the
        missing ones only. Returns how many."""
        have = {
            json.dumps(
                [t.params or t.system_attrs.get("fixed_params", {}), t.user_attrs["seed"]],
                sort_keys=True,
            )
            for t in self._trials()
            if t.user_attrs.get("stage") == stage
            and "seed" in t.user_attrs
            and (t.state != TrialState.FAIL or "diverged" in t.user_attrs)
        }
        added = 0
        with warnings.catch_warnings():  # values between a float axis's bounds: fine
            warnings.simplefilter("ignore", UserWarning)
            for params in self.optuna.user_attrs.get(f"stage{stage}", []):
                for seed in self.study.seeds:
                    if json.dumps([params, seed], sort_keys=True) in have:
                        continue
                    self.optuna.enqueue_trial(
                        params, user_attrs={"stage": stage, "seed": seed}, skip_if_exists=False
                    )
                    added += 1
        return added

    def _trials(self) -> list[FrozenTrial]:
        return [
            t for t in self.optuna.get_trials(deepcopy=False) if "placeholder" not in t.user_attrs
        ]

    def _counts(self) -> tuple[int, int, int]:
        """(finished, waiting, running) trials."""
        finished = waiting = running = 0
        for t in self._trials():
            if _finished(t):
                finished += 1
            elif t.state == TrialState.WAITING:
                waiting += 1
            elif t.state == TrialState.RUNNING:
                running += 1
        return finished, waiting, running

    @property
    def trials(self) -> dict[str, None]:
        """The trials this search has run or will run, by key (for counts): ``trials``
        configurations for sampled methods; coarse-to-fine's enqueued points x seeds; PBT's
        members x seeds (one record each)."""
        if self.population:
            members = range(self.settings.members)
            return {f"pbt_s{s}_m{k}": None for s in self.study.seeds for k in members}
        if self.sampled:
            return {f"#{i}": None for i in range(self.settings.trials or 0)}
        keys: dict[str, None] = {}
        for t in self._trials():
            params = t.params or t.system_attrs.get("fixed_params", {})  # waiting: fixed only
            keys[json.dumps([params, t.user_attrs.get("seed")], sort_keys=True)] = None
        return keys

    def finished(self) -> int:
        """Finished trials (PBT: finished members, as :attr:`trials` counts them)."""
        return self._counts()[0] * (self.settings.members if self.population else 1)

    def completed(self) -> int:
        complete = sum(t.state == TrialState.COMPLETE for t in self._trials())
        return complete * (self.settings.members if self.population else 1)  # PBT: members

    def diverged(self) -> dict[str, str]:
        return {
            t.user_attrs.get("key", str(t.number)): t.user_attrs["diverged"]
            for t in self._trials()
            if t.state == TrialState.FAIL and "diverged" in t.user_attrs
        }

    def pruned(self) -> int:
        return sum(t.state == TrialState.PRUNED for t in self._trials())

    def done(self) -> bool:
        """Nothing more to run: ``trials`` finished, coarse-to-fine's last stage, or PBT's
        populations."""
        if self.sampled:
            return self.finished() >= (self.settings.trials or 0)
        if self.population:  # no next stage: every seed's population finished
            return self._counts()[0] >= len(self.study.seeds)
        return bool(self.optuna.user_attrs.get("done"))

    def _requeue(self, trials: list[FrozenTrial]) -> int:
        """Mark RUNNING trials FAIL and enqueue a copy with their parameters, seed and stage."""
        requeued = 0
        for t in trials:
            if self.storage.get_trial(t._trial_id).state != TrialState.RUNNING:
                continue
            try:
                self.storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                failed = self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if failed:
                attrs = {k: v for k, v in t.user_attrs.items() if k != "interrupted"}
                self.optuna.enqueue_trial(dict(t.params), user_attrs=attrs)
                requeued += 1
        return requeued

    def recover_local(self) -> int:
        """Fail and re-enqueue trials left RUNNING by a killed run (only while this process
        holds the run directory's lock); returns how many."""
        running = self.optuna.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return self._requeue(running)

    def _release(self) -> int:
        owned = [self.storage.get_trial(i) for i in self._owned]
        self._owned.clear()
        return self._requeue(owned)

    def _next(self) -> optuna.Trial | None:
        """A waiting trial, or (sampled) a new one asked from the sampler: RUNNING, ours, with
        a first heartbeat. None when coarse-to-fine's queue was empty after all."""
        with deferred(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trial = self.optuna.ask()
            fixed = self.storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
            if fixed is None and not self.sampled:  # another worker took the last one
                self.storage.set_trial_user_attr(trial._trial_id, "placeholder", True)
                self.optuna.tell(trial, state=TrialState.FAIL)
                return None
            self.storage.record_heartbeat(trial._trial_id)
            self._owned[trial._trial_id] = trial
            if "seed" not in trial.user_attrs:  # asked from the sampler, not a copy
                trial.set_user_attr("seed", self.study.seeds[0])
                trial.set_user_attr("tag", f"#{trial.number}")
        return trial

    # -- work ----------------------------------------------------------------------------
    def work(
        self,
        run_dir: RunDir | None = None,
        on_trial: Callable[[list[Trial], str], None] | None = None,
        context: TrialContext | None = None,
        stack: bool = True,
        poll: float = 1.0,
        advance: bool = False,
    ) -> None:
        """Train trials until the search is done. ``advance``: this process enqueues
        coarse-to-fine's next stage (the coordinator); others wait for it. ``stack``:
        coarse-to-fine's waiting trials that can train together
        (:func:`~reglab.lab.work.stacking.stack_key`) train as one stack, as a grid's do;
        sampled trials train alone (each asks the sampler after the last one told it, and
        its pruner stops it on its own), or, with ``[search] batch = K``, K at a time, those
        that can as one stack pruned member by member
        (:mod:`~reglab.lab.sweep.stacked_search`)."""
        context = context or TrialContext()
        stack = stack and context.tensorboard is None
        batched = stack and self.sampled and self.settings.batch > 1
        stack = stack and not self.sampled
        carried = None
        try:
            while True:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    fail_stale_trials(self.optuna)
                finished, waiting, running = self._counts()
                budget = self.settings.trials or 0
                if batched and (waiting or finished + running < budget):
                    k = min(self.settings.batch, waiting + max(0, budget - finished - running))
                    train_batch(self, k, run_dir, on_trial, context)
                    continue
                if carried or waiting or (self.sampled and finished + running < budget):
                    batch, carried = self._batch(carried, stack)
                    if batch:
                        self._run(batch, run_dir, on_trial, context)
                    continue
                if not running:
                    if self.sampled or self.done():
                        return
                    if advance:
                        self.advance()
                        continue
                time.sleep(poll)  # others' trials, or the next stage: wait
        except BaseException:  # Ctrl-C, SIGTERM, an error: our unfinished trials go back
            with deferred():
                self._release()
            raise

    def _spec(self, trial: optuna.Trial) -> Trial:
        """The popped trial's grid point and seed (recorded in its user attributes)."""
        if self.population:
            return population_spec(self, trial)
        params = suggest(trial, self.entry.space)
        seed = int(trial.user_attrs["seed"])
        point = self.entry.point(params, trial.user_attrs.get("tag", ""))
        spec = Trial(f"{point.key}__seed{seed}", point, seed)
        for key, value in (("key", spec.key), ("point", point.key), ("label", point.label)):
            trial.set_user_attr(key, value)
        return spec

    def _batch(
        self, carried: tuple[optuna.Trial, Trial] | None, stack: bool
    ) -> tuple[list[tuple[optuna.Trial, Trial]], tuple[optuna.Trial, Trial] | None]:
        """Trials to train together (one, unless ``stack``), and one popped after them that
        belongs to the next batch (already ours)."""
        if carried is None:
            trial = self._next()
            if trial is None:
                return [], None
            carried = (trial, self._spec(trial))
        batch = [carried]
        group = stack_key(carried[1].point.config) if stack and not self.population else None
        while group is not None and len(batch) < MAX_STACK and self._counts()[1]:
            trial = self._next()
            if trial is None:
                break
            following = (trial, self._spec(trial))
            if stack_key(following[1].point.config) != group:
                return batch, following
            batch.append(following)
        return batch, None

    def _run(
        self,
        batch: list[tuple[optuna.Trial, Trial]],
        run_dir: RunDir | None,
        on_trial: Callable[[list[Trial], str], None] | None,
        context: TrialContext,
    ) -> None:
        if self.population:  # a batch of one: the trial trains its seed's population
            return run_population(self, *batch[0], run_dir, on_trial, context)
        specs = [spec for _, spec in batch]
        if on_trial is not None:
            on_trial(specs, "start")
        report = None
        if self.settings.pruner != "none":  # sampled: a batch of one
            report = PruningReport(batch[0][0], self.objective.key)
            context = dataclasses.replace(context, callbacks=(*context.callbacks, report))
        interval = self.storage.get_heartbeat_interval() or 10
        with Heartbeat(self.storage, [t._trial_id for t, _ in batch], interval):
            try:
                outcomes = self._train(specs, context)
            except Exception:
                for trial, _ in batch:
                    self._tell(trial, state=TrialState.FAIL)
                raise
        for (trial, spec), outcome in zip(batch, outcomes, strict=True):
            with deferred():  # a trial's files and its state change together
                if isinstance(outcome, Diverged):
                    if run_dir is not None:
                        run_dir.save_divergence(spec.key, outcome.reason)
                    trial.set_user_attr("diverged", outcome.reason)
                    self._tell(trial, state=TrialState.FAIL)
                else:
                    self._store(trial, spec, outcome, run_dir, report)
        if on_trial is not None:
            on_trial(specs, "done")

    @staticmethod
    def _train(specs: list[Trial], context: TrialContext) -> list[TrialOutcome | Diverged]:
        if len(specs) > 1:
            try:
                return list(run_stacked([(s.point.config, s.seed) for s in specs], context))
            except Diverged:
                pass  # a member diverged: train each alone, which names it with its step
        outcomes: list[TrialOutcome | Diverged] = []
        for spec in specs:
            try:
                outcomes.append(run_trial(spec.point.config, spec.seed, context))
            except Diverged as err:
                outcomes.append(err)
        return outcomes

    def _tell(self, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None:
        self.optuna.tell(trial, *args, **kwargs)
        self._owned.pop(trial._trial_id, None)

    def _store(
        self,
        trial: optuna.Trial,
        spec: Trial,
        outcome: TrialOutcome,
        run_dir: RunDir | None,
        report: PruningReport | None,
    ) -> None:
        metrics = strict_metrics(outcome.metrics)
        if run_dir is not None:
            run_dir.save_trial(spec.key, outcome, metrics)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("history", json_safe(outcome.history))
        trial.set_user_attr("reliability", json_safe(outcome.reliability))
        trial.set_user_attr("tensors", tensor_shapes(outcome.model))
        if "stacked" in outcome.extra:
            trial.set_user_attr("stacked", outcome.extra["stacked"])
        key = self.objective.key
        value = objective_value(metrics, key)  # the final metric, as a grid's Optuna value
        if value is None and outcome.history:
            value = objective_value(outcome.history[-1], key)
        values = self._values(metrics) if self.multi_objective else [value]
        missing = [o.key for o, v in zip(self.objectives, values, strict=True) if v is None]
        if report is not None and report.pruned_at is not None:
            trial.set_user_attr("pruned_at", report.pruned_at)
            self._tell(trial, state=TrialState.PRUNED)
        elif missing:
            reason = f"no finite {missing[0]} was logged"
            trial.set_user_attr("diverged", reason)
            self._tell(trial, state=TrialState.FAIL)
        else:
            self._tell(trial, values if self.multi_objective else value)

    def _values(self, metrics: Mapping[str, Any]) -> list[float | None]:
        """Several objectives: each metric as measured (the study has one direction per
        objective), None where not measured or not finite."""
        return [optuna_objective_value(metrics, o) for o in self.objectives]

    # -- coarse-to-fine's stages ---------------------------------------------------------
    def _point_results(self) -> list[tuple[dict[str, Any], list[float]]]:
        """Each measured point's settings and its seeds' objective values (COMPLETE trials,
        one per seed), in the order first measured."""
        grouped: dict[str, tuple[dict[str, Any], dict[int, float]]] = {}
        for t in self._trials():
            if t.state != TrialState.COMPLETE or t.value is None:
                continue
            params = stored_params(self.entry.space, t.params)
            slot = grouped.setdefault(json.dumps(params, sort_keys=True), (params, {}))
            slot[1].setdefault(int(t.user_attrs.get("seed", 0)), float(t.value))
        return [(params, list(values.values())) for params, values in grouped.values()]

    def advance(self) -> bool:
        """Coarse-to-fine: once nothing is waiting or running, enqueue the next stage (True),
        or mark the search done (False). Only the coordinator calls it."""
        if self.sampled or self.done():
            return False
        _, waiting, running = self._counts()
        if waiting or running:
            return False
        stage = int(self.optuna.user_attrs.get("stage", 1))
        if self._enqueue_missing(stage):  # a stage left half-enqueued, or a trial lost
            return True
        results = self._point_results()
        points: list[dict[str, Any]] = []
        if stage < self.settings.stages and results and not self.population:
            points = next_stage(
                self.entry.space, results, maximize=True, points=self.settings.points
            )
        if not points:
            self.optuna.set_user_attr("done", True)
            return False
        self._enqueue_stage(stage + 1, points)
        return True

    # -- results -------------------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        """One record per finished trial (Sweep's format), in trial order; a pruned trial's
        label says so, and its metrics are those of the model where it stopped. PBT: one
        record per member of each population."""
        if self.population:
            return population_records(self)
        records: dict[str, dict[str, Any]] = {}
        for t in self._trials():
            if not _finished(t) or "key" not in t.user_attrs:
                continue
            attrs = t.user_attrs
            label = attrs["label"]
            if t.state == TrialState.PRUNED:
                label += f" (pruned at epoch {attrs.get('pruned_at', '?')})"
            records.setdefault(
                attrs["key"],
                {
                    "key": attrs["key"],
                    "point": attrs["point"],
                    "label": label,
                    "entry": self.entry.name,
                    "seed": attrs.get("seed"),
                    "params": stored_params(self.entry.space, t.params),
                    "metrics": attrs.get("metrics", {}),
                    "history": attrs.get("history", []),
                    "reliability": attrs.get("reliability"),
                    "tensors": attrs.get("tensors"),
                    "diverged": attrs.get("diverged"),
                    "stage": attrs.get("stage"),
                    "pruned": t.state == TrialState.PRUNED,
                },
            )
        return list(records.values())

    def best(self) -> tuple[dict[str, Any], list[float]] | None:
        """The chosen configuration and its seeds' objective values: the best complete trial
        (sampled), the best point by its mean over seeds (coarse-to-fine); None if none.
        Several objectives choose no one configuration: see :meth:`front`."""
        if self.multi_objective:
            raise ValueError("a multi-objective search has a Pareto front, not one best")
        return choose(self.entry.space, self._point_results())

    def front(self) -> list[ParetoPoint]:
        """The complete trials no other complete trial dominates, with their settings and
        objective values as measured (:func:`~reglab.lab.search.pareto_front`)."""
        return pareto_front(self.optuna, self.entry.space)

    def conclude(self, run_dir: RunDir | None = None) -> str:
        """The stages, the chosen configuration with its evidence, and the paste-ready text,
        as printed; ``best.py`` / ``best.toml`` written into ``run_dir``
        (:func:`~reglab.lab.sweep.conclusion.conclusion`). PBT: the members' schedules
        (:func:`~reglab.lab.sweep.pbt_run.population_conclusion`)."""
        if self.population:
            return population_conclusion(self, run_dir)
        staged: dict[int, list[dict[str, Any]]] = {}
        history: list[dict[str, Any]] = []
        for t in self._trials():
            history = history or t.user_attrs.get("history") or []
            if t.state == TrialState.COMPLETE and "stage" in t.user_attrs:
                params = stored_params(self.entry.space, t.params)
                staged.setdefault(int(t.user_attrs["stage"]), []).append(params)
        if self.multi_objective:
            text = front_conclusion(
                self.entry, self.front(), self.objectives, self.completed(), run_dir
            )
            return "\n".join([*self._pruning_lines(), text])
        name = self.objective.key
        text = conclusion(self.entry, self._point_results(), staged, name, run_dir)
        return "\n".join([*self._pruning_lines(), text])

    def _pruning_lines(self) -> list[str]:
        """``pruned 5 of 8 trials: 21 of 32 epochs trained (34 % saved)``."""
        done = [t for t in self._trials() if _finished(t) and "history" in t.user_attrs]
        pruned = sum(t.state == TrialState.PRUNED for t in done)
        if self.settings.pruner == "none" or not done:
            return []
        trained = sum(len(t.user_attrs["history"]) for t in done)
        full = len(done) * self.entry.epochs
        return [
            f"pruned {pruned} of {len(done)} trials: {trained} of {full} epochs trained "
            f"({100 * (1 - trained / full):.0f} % saved)"
        ]
