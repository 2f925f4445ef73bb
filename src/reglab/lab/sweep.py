"""Sweeps on Optuna: every grid point x seed is one enqueued trial, run exactly once.

* The process that *creates* the Optuna study (creation is atomic in the database) enqueues
  every trial with ``enqueue_trial`` and then marks the study ready; other workers wait for
  that mark. ``study.ask`` pops a waiting trial atomically (a row lock on PostgreSQL), so each
  trial goes to one worker.
* Heartbeats mark a worker's trial stale when the worker dies; ``fail_stale_trials`` (run by
  every worker before each trial) fails it and ``RetryHeartbeatStaleTrialCallback`` enqueues a
  copy, which another worker runs. A worker exits only when nothing is waiting or running.
* A local run directory is locked by one coordinator; on resume, trials left RUNNING by a
  killed run are failed and re-enqueued at once (no need to wait for the grace period).
* Results (metrics and per-epoch history) are stored as trial user attributes, so workers on
  other machines report into the same database; files in the run directory are conveniences.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from reglab.lab.grid import Trial, trials
from reglab.lab.rundir import RunDir
from reglab.lab.runner import run_trial
from reglab.lab.studyfile import Study

__all__ = ["DirectoryLock", "RunDirBusy", "Sweep", "open_storage", "optuna_study_name"]


class RunDirBusy(RuntimeError):
    """Another reglab process holds the run directory."""


# Optuna logs every failed trial with its traceback at WARNING; reglab reports failures itself
# (one line from the CLI, the full traceback with --debug).
optuna.logging.set_verbosity(optuna.logging.ERROR)

_KEY = "trial_key"


def optuna_study_name(study: Study) -> str:
    """The study's name plus a fingerprint of its resolved contents: editing a study file
    starts a new Optuna study instead of mixing results."""
    digest = hashlib.sha256(json.dumps(study.source, sort_keys=True, default=str).encode())
    return f"{study.name}-{digest.hexdigest()[:10]}"


def open_storage(url: str, heartbeat: int = 10, grace: int = 30) -> RDBStorage:
    """An Optuna RDB storage with heartbeats and automatic retry of stale trials."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # several local processes share the file
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: we rely on them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=heartbeat,
            grace_period=grace,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
        )


class Sweep:
    """One study's sweep in one storage: enqueue, work, resume, read results."""

    def __init__(
        self, study: Study, storage_url: str, run_dir: RunDir, heartbeat: int = 10, grace: int = 30
    ) -> None:
        self.study = study
        self.run_dir = run_dir
        self.trials = {t.key: t for t in trials(study)}
        self.storage = open_storage(storage_url, heartbeat, grace)
        self.name = optuna_study_name(study)
        try:
            self.optuna = optuna.create_study(
                storage=self.storage, study_name=self.name, direction="maximize"
            )
            for key, trial in self.trials.items():
                self.optuna.enqueue_trial(
                    {_KEY: key},
                    user_attrs={
                        "point": trial.point.key,
                        "label": trial.point.label,
                        "entry": trial.point.entry,
                        "seed": trial.seed,
                        "params": json.dumps(trial.point.params, default=str),
                    },
                )
            self.optuna.set_user_attr("ready", True)
        except optuna.exceptions.DuplicatedStudyError:
            self.optuna = optuna.load_study(storage=self.storage, study_name=self.name)
            deadline = time.monotonic() + 120
            while not self.optuna.user_attrs.get("ready"):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"study {self.name} was created but never enqueued"
                    ) from None
                time.sleep(0.5)

    # -- state -------------------------------------------------------------------------------
    def states(self) -> dict[str, list[TrialState]]:
        """Every trial key -> the states of its Optuna trials (attempts)."""
        out: dict[str, list[TrialState]] = {k: [] for k in self.trials}
        for t in self.optuna.get_trials(deepcopy=False):
            key = t.system_attrs.get("fixed_params", {}).get(_KEY)
            if key in out:
                out[key].append(t.state)
        return out

    def completed(self) -> int:
        return sum(TrialState.COMPLETE in s for s in self.states().values())

    def recover_local(self) -> int:
        """Fail and re-enqueue trials left RUNNING by a killed coordinator (only safe when this
        process holds the run directory's lock); returns how many."""
        recovered = 0
        for t in self.optuna.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                key = t.system_attrs.get("fixed_params", {}).get(_KEY)
                if key is not None:
                    self.optuna.enqueue_trial({_KEY: key}, user_attrs=dict(t.user_attrs))
                    recovered += 1
        return recovered

    # -- work --------------------------------------------------------------------------------
    def _objective(
        self,
        on_trial: Callable[[Trial, str], None] | None,
        epoch_callback: Callable[[int, int], None] | None,
    ) -> Callable[..., float]:
        keys = list(self.trials)

        def objective(trial: optuna.Trial) -> float:
            fixed = self.storage.get_trial_system_attrs(trial._trial_id).get("fixed_params", {})
            if _KEY not in fixed:  # the queue was empty when this worker asked
                raise optuna.TrialPruned("nothing left to run")
            key = trial.suggest_categorical(_KEY, keys)
            spec = self.trials[key]
            if on_trial is not None:
                on_trial(spec, "start")
            outcome = run_trial(spec.point.config, spec.seed, epoch_callback)
            self.run_dir.save_trial(key, outcome)
            trial.set_user_attr("metrics", outcome.metrics)
            trial.set_user_attr("history", outcome.history)
            trial.set_user_attr("reliability", outcome.reliability)
            if on_trial is not None:
                on_trial(spec, "done")
            # Optuna needs a value; the lab reads results from the user attributes.
            return outcome.metrics.get("test_acc", -outcome.metrics.get("test_recon", 0.0))

        return objective

    def _remaining(self) -> tuple[int, int]:
        waiting = running = 0
        for t in self.optuna.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)
        ):
            if t.state == TrialState.WAITING:
                waiting += 1
            else:
                running += 1
        return waiting, running

    def work(
        self,
        on_trial: Callable[[Trial, str], None] | None = None,
        epoch_callback: Callable[[int, int], None] | None = None,
        poll: float = 1.0,
    ) -> None:
        """Run waiting trials until none is waiting or running (stale ones are retried)."""
        objective = self._objective(on_trial, epoch_callback)

        def stop_when_empty(study: optuna.Study, _trial: Any) -> None:
            if self._remaining()[0] == 0:
                study.stop()

        while True:
            waiting, running = self._remaining()
            if waiting:
                self.optuna.optimize(objective, callbacks=[stop_when_empty], catch=())
                continue
            if not running:
                return
            time.sleep(poll)  # others' trials: wait until they finish or turn stale
            fail_stale_trials(self.optuna)

    # -- results -----------------------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        """One record per completed trial key (the first completion): key, point, label,
        entry, seed, params, metrics, history."""
        records, seen = [], set()
        for t in self.optuna.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            key = t.params.get(_KEY)
            if key is None or key in seen or key not in self.trials:
                continue
            seen.add(key)
            spec = self.trials[key]
            records.append(
                {
                    "key": key,
                    "point": spec.point.key,
                    "label": spec.point.label,
                    "entry": spec.point.entry,
                    "seed": spec.seed,
                    "params": spec.point.params,
                    "metrics": t.user_attrs["metrics"],
                    "history": t.user_attrs["history"],
                    "reliability": t.user_attrs.get("reliability"),
                }
            )
        order = list(self.trials)
        return sorted(records, key=lambda r: order.index(r["key"]))


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock``: one coordinator per run
    directory (released automatically if the process dies)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RunDirBusy(f"another reglab process is running in {folder}") from None

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
