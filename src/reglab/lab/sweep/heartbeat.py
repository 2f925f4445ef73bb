"""Heartbeats of a worker's running trials: a stale trial (its worker died) is failed and
re-enqueued by Optuna's heartbeat machinery (:func:`reglab.lab.sweep.storage.open_storage`)."""

from __future__ import annotations

import threading
import time

from optuna.storages import RDBStorage

from reglab.lab.sweep.database import is_disconnect

__all__ = ["Heartbeat"]


class Heartbeat:
    """Records a heartbeat for each running trial of a batch every ``interval`` seconds.

    While the database is unreachable, beats are skipped and tried again every interval for
    ``db_retry`` seconds (the trials keep training); after that the thread stops beating,
    so the trials turn stale and other workers retry them."""

    def __init__(
        self, storage: RDBStorage, trial_ids: list[int], interval: float, db_retry: float = 0.0
    ) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self.db_retry = db_retry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        lost_since: float | None = None
        while True:
            try:
                for trial_id in self.trial_ids:
                    self.storage.record_heartbeat(trial_id)
                lost_since = None
            except Exception as err:
                if not is_disconnect(err):
                    raise
                lost_since = lost_since if lost_since is not None else time.monotonic()
                if time.monotonic() - lost_since > self.db_retry:
                    return
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
