"""One coordinator per local run directory: an exclusive ``flock`` on ``RUN_DIR/.lock``."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

__all__ = ["DirectoryLock", "RunDirBusy"]


class RunDirBusy(RuntimeError):
    """Another reglab process holds the run directory."""


class DirectoryLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock``: one coordinator per run directory.

    The lock belongs to the open file, so worker processes that inherit ``fd`` hold it too:
    it is free only when the coordinator *and* its workers have ended (however they ended),
    which is what makes re-queueing RUNNING trials on resume safe. ``wait`` seconds are
    allowed for processes that are ending to let go."""

    def __init__(self, folder: Path, wait: float = 0.0) -> None:
        self.fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise RunDirBusy(f"another reglab process is running in {folder}") from None
                time.sleep(0.1)

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
