"""The results store's health: storage URLs checked before anything is created, and SQLite
files recognised as empty or damaged instead of silently replaced.

Every message names what it is about (``--storage``, or the file) and what to do, in one
line; passwords in URLs are never printed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["StorageError", "check_file", "check_url", "shown"]

_SQLITE_HEADER = b"SQLite format 3\x00"
#: Databases Optuna's RDB storage supports.
_BACKENDS = ("sqlite", "postgresql", "mysql")


class StorageError(ValueError):
    """A storage URL that cannot be used, or a storage file that is damaged."""


def shown(url: str) -> str:
    """``url`` with its password hidden (for messages)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def check_url(url: str, option: str = "--storage") -> None:
    """Raise :class:`StorageError` (one line naming ``option``) unless ``url`` parses, names a
    supported database whose driver is installed, and — for a server — accepts a connection;
    for SQLite, the file must be a healthy Optuna storage or not exist yet (:func:`check_file`).
    Creates nothing, except SQLite's checks read the file."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"{option}: cannot parse {url!r} as a database URL (expected e.g. "
            "sqlite:///path/to/storage.db or postgresql://user:password@host/database)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _BACKENDS:
        raise StorageError(
            f"{option}: unsupported database {backend!r} in {shown(url)} (Optuna stores "
            f"studies in {', '.join(_BACKENDS)})"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as err:
        hint = " (pip install 'reglab[postgres]')" if backend == "postgresql" else ""
        raise StorageError(
            f"{option}: no driver for {parsed.drivername} is installed{hint}: {err}"
        ) from None
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            if not path.parent.is_dir():
                raise StorageError(f"{option}: the folder of {path} does not exist")
            check_file(path, option)
        return
    connect_args = {"connect_timeout": 10} if backend in ("postgresql", "mysql") else {}
    engine = create_engine(parsed, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        cause = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise StorageError(
            f"{option}: cannot connect to {shown(url)}: {cause[0] if cause else type(err).__name__}"
        ) from None
    finally:
        engine.dispose()


def check_file(path: Path, what: str, recovery: str = "") -> None:
    """Raise :class:`StorageError` when the SQLite storage at ``path`` exists but is empty,
    not an SQLite database, damaged, or no Optuna storage; ``what`` names it in the message
    and ``recovery`` says what to do. Opens the file read-only (read-write only to roll back
    a journal left by a killed process, as SQLite requires)."""
    if not path.exists():
        return
    problem = _problem(path)
    if problem is not None:
        tail = f"; {recovery}" if recovery else ""
        raise StorageError(f"{what}: {path} {problem}{tail}")


def _problem(path: Path) -> str | None:
    if not path.is_file():
        return "is not a file"
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): its results are lost or were never written"
    with path.open("rb") as f:
        if f.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            return "is not an SQLite database"
    # A journal left by a process killed mid-transaction is rolled back by the first
    # connection that may write (any SQLite reader would); a read-only one cannot do that.
    journal = path.with_name(path.name + "-journal")
    mode = "rw" if journal.is_file() and journal.stat().st_size else "ro"
    try:
        connection = sqlite3.connect(f"file:{path.resolve()}?mode={mode}", uri=True)
        try:
            (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        return f"is damaged ({err})"
    if verdict != "ok":
        return f"is damaged ({verdict})"
    if "studies" not in tables:
        return "holds no Optuna storage"
    return None
