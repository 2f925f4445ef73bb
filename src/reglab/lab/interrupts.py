"""Interruptions: SIGTERM handled like Ctrl-C, short sections that an interrupt waits for, and
worker processes that end with the process that started them.

What a sweep does with them (:mod:`reglab.lab.sweep`): an interrupted worker puts its
unfinished trials back in the queue before it exits, so nothing waits for a heartbeat to go
stale; a killed one (SIGKILL) leaves them RUNNING, and the next ``reglab run --resume`` (or,
in a shared storage, the heartbeat's grace period) re-queues them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Interrupted", "deferred", "exit_with_parent", "raise_on_terminate"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``exit_code`` is the shell's ``128 + signal``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    del frame
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def raise_on_terminate() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, so ``finally``
    blocks and a worker's clean-up run (the default SIGTERM action kills the process
    without either)."""
    if _main_thread():
        for signum in _SIGNALS:
            signal.signal(signum, _raise)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: SIGINT / SIGTERM arriving meanwhile are raised (as
    :class:`Interrupted`) when it ends. Used where a trial's state and files change together.
    Outside the main thread (where signals are not delivered) it does nothing."""
    if not _main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: pending.append(signum)) for s in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if pending:
        raise Interrupted(pending[0])


_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent: int) -> None:
    """Get SIGTERM when process ``parent`` (the coordinator that started this worker) ends,
    however it ends — SIGKILL included. Linux: the kernel's parent-death signal; elsewhere a
    daemon thread that watches ``os.getppid()`` every second."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent:  # it ended before the request was made
                os.kill(os.getpid(), signal.SIGTERM)
            return

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="reglab-parent-watch", daemon=True).start()
