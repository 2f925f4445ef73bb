"""How trials are queued, run and stored: an Optuna study in the run directory. Knows no
model; receives parsed studies and hands grid points to :func:`reglab.lab.work.runner.run_trial`.

* :mod:`~reglab.lab.sweep.storage`: storage URLs checked, the Optuna storage opened, the
  study's name
* :mod:`~reglab.lab.sweep.heartbeat`: heartbeats of running trials
* :mod:`~reglab.lab.sweep.lock`: one coordinator per run directory
* :mod:`~reglab.lab.sweep.sweep`: :class:`Sweep` — enqueue, pop, recover, store, results
"""

from reglab.lab.sweep.lock import DirectoryLock, RunDirBusy
from reglab.lab.sweep.storage import open_storage, optuna_study_name
from reglab.lab.sweep.sweep import MAX_STACK, NoResults, Sweep

__all__ = [
    "MAX_STACK",
    "DirectoryLock",
    "NoResults",
    "RunDirBusy",
    "Sweep",
    "open_storage",
    "optuna_study_name",
]
