"""Workers on a real PostgreSQL server (CI starts one): an empty database shared by workers
that start together, and a server stopped and restarted in the middle of a sweep.

Each test works in a database of its own, created empty and dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from reglab.lab import find_study
from reglab.lab.sweep import open_storage, optuna_study_name
from tests.lab.conftest import write_tiny

POSTGRES = os.environ.get("REGLAB_TEST_POSTGRES")

pytestmark = pytest.mark.skipif(
    not POSTGRES and not os.environ.get("REGLAB_REQUIRE_POSTGRES"),
    reason="set REGLAB_TEST_POSTGRES=postgresql://... to run (CI does)",
)


@pytest.fixture
def empty_database() -> Iterator[str]:
    """The URL of a new, empty database on the test server (dropped afterwards)."""
    assert POSTGRES, "REGLAB_REQUIRE_POSTGRES is set but REGLAB_TEST_POSTGRES is not"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    name = f"reglab_test_{uuid.uuid4().hex[:10]}"
    # No pool: a connection made before a server restart would be dead afterwards.
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        _server_running()  # a failed restart test must not leave the server down
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reglab(*args: str) -> subprocess.Popen[str]:
    # --debug: an unexpected error shows its traceback in the assertion's message
    return subprocess.Popen(
        [sys.executable, "-m", "reglab", "--debug", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _attempts(storage: str, study_path: Path) -> dict[str, list[TrialState]]:
    """Every trial key of the study -> the states of its Optuna trials."""
    study, _, _ = find_study(str(study_path))
    loaded = optuna.load_study(study_name=optuna_study_name(study), storage=storage)
    states: dict[str, list[TrialState]] = {t.key: [] for t in study.trials}
    for t in loaded.get_trials(deepcopy=False):
        key = t.system_attrs.get("fixed_params", {}).get("trial_key")
        if key is not None:
            states[key].append(t.state)
    return states


def test_schema_created_once_by_processes_opening_an_empty_database(empty_database: str) -> None:
    """Optuna creates its tables and PostgreSQL types on first open; openers racing on an
    empty database collided (``duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"``) before the schema lock."""
    start, errors = threading.Barrier(6), []

    def open_one() -> None:
        start.wait()
        try:
            open_storage(empty_database).engine.dispose()
        except Exception as err:  # collected: the assertion names them
            errors.append(repr(err))

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_two_workers_starting_together_on_an_empty_database(
    tmp_path: Path, empty_database: str
) -> None:
    study = write_tiny(tmp_path, "together")
    common = ["--storage", empty_database, "--heartbeat", "1", "--grace", "10", "--no-stack"]
    workers = [
        _reglab("worker", str(study), "--run-dir", str(tmp_path / name), *common)
        for name in ("a", "b")
    ]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    states = _attempts(empty_database, study)
    assert all(s == [TrialState.COMPLETE] for s in states.values()), states


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster on the test server's port, or None."""
    from sqlalchemy.engine import make_url

    if shutil.which("pg_lsclusters") is None or os.geteuid() != 0:
        return None
    port = str(make_url(POSTGRES or "").port or 5432)
    lines = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    for line in lines.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[0], fields[1]
    return None


def _server_running() -> None:
    cluster = _cluster()
    if cluster is not None:
        subprocess.run(["pg_ctlcluster", *cluster, "start"], capture_output=True)
        for _ in range(60):
            if subprocess.run(["pg_isready", "-q", "-h", "localhost"]).returncode == 0:
                return
            time.sleep(0.5)


@pytest.mark.slow
def test_server_restarted_mid_sweep_under_two_workers(tmp_path: Path, empty_database: str) -> None:
    """Stop the server (``-m fast``: connections cut) while two workers train, start it again
    8 s later: both workers reconnect, finish their trials in flight and the rest, and every
    trial is COMPLETE exactly once and trained once."""
    cluster = _cluster()
    if cluster is None:
        if os.environ.get("REGLAB_REQUIRE_POSTGRES"):
            pytest.fail("the restart test needs root and pg_ctlcluster for the test server")
        pytest.skip("needs root and pg_ctlcluster to restart the server")
    study_path = write_tiny(tmp_path, "restart", epochs=150)
    study, _, _ = find_study(str(study_path))
    common = [
        *("--storage", empty_database, "--heartbeat", "1", "--grace", "60"),
        *("--db-retry", "120s", "--no-stack"),
    ]
    workers = [
        _reglab("worker", str(study_path), "--run-dir", str(tmp_path / name), *common)
        for name in ("a", "b")
    ]
    done = 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for work in flight: a trial done, others not
            with contextlib.suppress(KeyError, optuna.exceptions.StorageInternalError):
                states = _attempts(empty_database, study_path).values()
                done = sum(TrialState.COMPLETE in s for s in states)
                if done >= 1:
                    break
            assert all(w.poll() is None for w in workers), "a worker ended early"
            time.sleep(0.2)
        assert done < len(study.trials), "the sweep ended before the server could be stopped"
        subprocess.run(["pg_ctlcluster", *cluster, "stop", "-m", "fast"], check=True)
        time.sleep(8)
    finally:
        _server_running()
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    assert "6/6 trials complete" in err
    states = _attempts(empty_database, study_path)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states
    # Another attempt may exist only where a pop's commit was lost with the connection: that
    # attempt never trained (no heartbeat, no result) and was re-queued after the grace
    # period. No trial ran twice: each trial's files are in one worker's run directory.
    loaded = optuna.load_study(study_name=optuna_study_name(study), storage=empty_database)
    for t in loaded.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        assert "metrics" not in t.user_attrs, t
        assert t.user_attrs.get("interrupted"), t
    folders = [p.name for run in ("a", "b") for p in (tmp_path / run / "trials").glob("*")]
    assert sorted(folders) == sorted(states), folders
