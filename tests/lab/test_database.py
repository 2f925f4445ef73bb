"""reglab.lab.sweep.database: which errors mean "the server could not be reached" (and are
retried). The chains are built as Optuna and SQLAlchemy raise them; the live server cases
are in test_postgres.py."""

from __future__ import annotations

import pytest
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError

from reglab.lab.sweep.database import is_disconnect, retrying

URL = "postgresql://user@host/db"


def _optuna_error(first: Exception) -> StorageInternalError:
    """What a call made right after ``first`` failed a transaction raises: SQLAlchemy's
    PendingRollbackError, raised while ``first`` was handled (its ``__context__``, no
    ``__cause__``), wrapped by Optuna's scoped session (``raise ... from``)."""
    pending = PendingRollbackError("Can't reconnect until invalid transaction is rolled back.")
    pending.__context__ = first
    err = StorageInternalError("An exception is raised during the commit.")
    err.__cause__ = pending
    return err


def _lost_connection() -> OperationalError:
    return OperationalError(
        "SELECT 1", {}, Exception("terminating connection due to administrator command"),
        connection_invalidated=True,
    )  # fmt: skip


def test_a_transaction_pending_rollback_after_a_lost_connection_is_a_disconnect() -> None:
    # Seen under a PostgreSQL restart (`pg_ctlcluster stop -m fast`): the PendingRollbackError
    # names no cause; the lost connection is its __context__.
    err = _optuna_error(_lost_connection())
    assert isinstance(err.__cause__, PendingRollbackError)
    assert err.__cause__.__cause__ is None
    assert isinstance(err.__cause__.__context__, OperationalError)
    assert is_disconnect(err)


def test_a_pending_rollback_after_another_error_is_not() -> None:
    duplicate = IntegrityError("INSERT", {}, Exception("duplicate key value"))
    assert not is_disconnect(_optuna_error(duplicate))
    assert not is_disconnect(StorageInternalError("An exception is raised during the commit."))


def test_retrying_calls_again_after_a_pending_rollback_of_a_lost_connection() -> None:
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise _optuna_error(_lost_connection())
        return "stored"

    assert retrying(call, seconds=5, url=URL) == "stored"
    assert len(calls) == 2

    def duplicate() -> str:
        calls.append(1)
        raise _optuna_error(IntegrityError("INSERT", {}, Exception("duplicate key value")))

    with pytest.raises(StorageInternalError):  # anything else is raised at once
        retrying(duplicate, seconds=5, url=URL)
    assert len(calls) == 3
