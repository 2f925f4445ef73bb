"""Surviving the database: a lost connection retried with backoff, and one creator at a time.

* :func:`retrying` calls a storage operation again, with exponential backoff, while the
  database server cannot be reached (a restart, a network blink), for up to ``seconds``;
  any other error, and a connection still lost after ``seconds``, is raised as it was.
  SQLite files do not disconnect: their errors are never retried.
* :func:`creation_lock` serialises what must happen once per storage — Optuna's schema
  creation (``CREATE TABLE``/``CREATE TYPE`` race on an empty PostgreSQL database) and a
  study's creation with its enqueueing — between processes and machines: a PostgreSQL
  advisory lock (MySQL ``GET_LOCK``) held on its own connection, or an ``flock`` on a file
  beside an SQLite database. A holder that dies releases it (the server drops its session;
  the kernel its file lock), so no one waits for a dead process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_RETRY",
    "creation_lock",
    "driver_error",
    "first_line",
    "is_disconnect",
    "is_server",
    "retrying",
]

T = TypeVar("T")

#: Seconds a lost database connection is retried by default (``--db-retry``).
DEFAULT_RETRY = 300.0
_FIRST_WAIT, _LONGEST_WAIT = 0.5, 10.0


def is_server(url: str) -> bool:
    """A database server (PostgreSQL, MySQL), as opposed to an SQLite file."""
    return not url.startswith("sqlite")


def driver_error(err: BaseException) -> BaseException | None:
    """The database driver's own error inside ``err``: SQLAlchemy's ``orig``, on ``err`` or
    on the SQLAlchemy error Optuna wrapped into it (``__cause__``); None for other errors."""
    return getattr(err, "orig", None) or getattr(err.__cause__, "orig", None)


def is_disconnect(err: BaseException | None) -> bool:
    """``err`` (or the SQLAlchemy error Optuna wrapped into it) says the database could not
    be reached: a refused, closed or reset connection, a server shutting down."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError

    seen = 0
    while err is not None and seen < 5:  # Optuna wraps SQLAlchemy's error in its own
        if isinstance(err, (OperationalError, InterfaceError)):
            return True
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        following = err.__cause__
        if following is None and isinstance(err, PendingRollbackError):
            # "Can't reconnect until invalid transaction is rolled back": raised while the
            # lost connection's error was handled (its __context__), e.g. when a server stops
            # mid-transaction (seen about once in 600 failed calls while restarting one)
            following = err.__context__
        err, seen = following, seen + 1
    return False


def retrying(call: Callable[..., T], *args: Any, seconds: float, url: str = "", **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, called again while the database is unreachable (waits
    0.5 s, doubling to 10 s) until ``seconds`` have passed since the first failure.
    ``url`` an SQLite URL: no retry."""
    if not seconds or (url and not is_server(url)):
        return call(*args, **kwargs)
    deadline, wait, told = None, _FIRST_WAIT, False
    while True:
        try:
            result = call(*args, **kwargs)
        except Exception as err:
            if not is_disconnect(err):
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + seconds
            if now >= deadline:
                raise
            if not told:  # one line, not one per attempt
                print(
                    f"reglab: the results store is unreachable; retrying for up to "
                    f"{seconds:g} s ({first_line(err)})",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(min(wait, max(0.0, deadline - now)))
            wait = min(2 * wait, _LONGEST_WAIT)
            continue
        if told:
            print("reglab: the results store is reachable again", file=sys.stderr, flush=True)
        return result


def first_line(err: BaseException) -> str:
    """The first line of the driver's error in ``err`` (else of ``err``): what a one-line
    message quotes."""
    cause = driver_error(err) or err
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@contextlib.contextmanager
def creation_lock(url: str, what: str, seconds: float = 0.0) -> Iterator[None]:
    """Hold the storage-wide lock named ``what`` (see the module docstring) for the block.
    Taking it is retried like :func:`retrying` for ``seconds`` while the server is down."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            yield
            return
        path = Path(parsed.database)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock
        return
    # A 63-bit key from the name: advisory locks are keyed by integers.
    key = int.from_bytes(hashlib.sha256(what.encode()).digest()[:8], "big") >> 1
    if backend == "postgresql":
        take, give = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    elif backend == "mysql":
        take, give = "SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)"
        key = str(key)  # type: ignore[assignment]
    else:  # pragma: no cover - check_url admits only the backends above
        yield
        return
    engine = create_engine(parsed, poolclass=_null_pool())
    try:
        connection = retrying(engine.connect, seconds=seconds, url=url)
        try:
            connection.execute(text(take), {"key": key})
            connection.commit()
            yield
        finally:
            with contextlib.suppress(Exception):  # a dead connection released it already
                connection.execute(text(give), {"key": key})
                connection.commit()
            with contextlib.suppress(Exception):
                connection.close()
    finally:
        engine.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool
