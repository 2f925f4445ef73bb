"""Heartbeats of a worker's running trials: a stale trial (its worker died) is failed and
re-enqueued by Optuna's heartbeat machinery (:func:`reglab.lab.sweep.storage.open_storage`)."""

from __future__ import annotations

import threading

from optuna.storages import RDBStorage

__all__ = ["Heartbeat"]


class Heartbeat:
    """Records a heartbeat for each running trial of a batch every ``interval`` seconds."""

    def __init__(self, storage: RDBStorage, trial_ids: list[int], interval: float) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
