"""Interruptions lose nothing: SIGINT, SIGTERM and SIGKILL of ``reglab run`` (with and
without ``--jobs``) and of ``reglab worker``, at random points, repeatedly. After the last
resume every trial is COMPLETE exactly once, none is left RUNNING or WAITING, and no process
of the run outlives its coordinator. The kill points are drawn from a seeded generator."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from optuna.trial import TrialState

from reglab.lab import find_study
from reglab.lab.sweep import Sweep
from tests.lab.conftest import write_tiny
from tests.lab.test_sweeps import _check_run_dir, _completions

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reglab", "--debug", *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(out: Path) -> int:
    return len(list(out.glob("trials/*/metrics.json")))


def _processes_of(out: Path) -> list[int]:
    """Live processes whose command line names the run directory (coordinator, workers)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (cmdline.parent / "stat").read_text()
        except OSError:
            continue
        if str(out) in text and "reglab" in text and ") Z " not in stat:  # not zombies
            pids.append(int(cmdline.parent.name))
    return pids


def _kill_at_random(
    proc: subprocess.Popen[str], out: Path, sig: signal.Signals, rng: random.Random
) -> bool:
    """Wait until one more trial has finished (or the process ended), then a random delay,
    then ``sig``; False when the process ended before it could be killed."""
    start = _finished(out)
    deadline = time.monotonic() + 120
    while _finished(out) == start and proc.poll() is None:
        assert time.monotonic() < deadline, "no trial finished in 120 s"
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.5))
    if proc.poll() is not None:
        return False
    finished_before = _finished(out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0 and sig != signal.SIGKILL:
        # Seen once: a SIGINT sent after the last trial had finished was lost while the report
        # imported matplotlib (stderr: matplotlib's "Unable to import Axes3D" warning), and the
        # run completed. Accepted only when every trial had finished before the signal: a
        # signal lost while trials remain still fails here.
        complete = re.search(r"(\d+)/\1 trials complete", stdout)
        assert complete, stdout + stderr
        assert int(complete.group(1)) == finished_before, stdout + stderr
        return False
    assert proc.returncode == EXIT[sig], stderr
    if sig != signal.SIGKILL:
        assert "interrupted" in stderr, stderr
        assert "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 15
    while _processes_of(out):  # workers end with their coordinator, however it ended
        assert time.monotonic() < deadline, f"orphaned processes: {_processes_of(out)}"
        time.sleep(0.1)
    return True


def _check_exactly_once(out: Path, study: Path, n_trials: int) -> None:
    states = _completions(f"sqlite:///{out / 'storage.db'}", study)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states
    assert not any(TrialState.RUNNING in s or TrialState.WAITING in s for s in states.values()), (
        states
    )
    _check_run_dir(out, n_trials)


def _interrupt_repeatedly(
    tmp_path: Path, sig: signal.Signals, jobs: int, kills: int, seed: int
) -> None:
    rng = random.Random(seed)
    tmp_path.mkdir(parents=True, exist_ok=True)
    study = write_tiny(tmp_path, "slow", epochs=40)
    out = tmp_path / "run"
    first = ["run", str(study), "--out", str(out), "--no-stack", "--jobs", str(jobs)]
    resume = ["run", "--resume", str(out), "--jobs", str(jobs)]
    killed = 0
    for round_ in range(kills):
        proc = _start(*(first if round_ == 0 else resume))
        if not _kill_at_random(proc, out, sig, rng):
            break
        killed += 1
    assert killed >= 1, "the run finished before the first kill"
    proc = _start(*resume)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "6/6 trials complete" in stdout
    _check_exactly_once(out, study, 6)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_interrupted_runs_resume_with_every_trial_once(
    tmp_path: Path, sig: signal.Signals, jobs: int
) -> None:
    _interrupt_repeatedly(tmp_path, sig, jobs, kills=1, seed=int(sig) * 10 + jobs)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_five_kills_in_a_row(tmp_path: Path, sig: signal.Signals, jobs: int) -> None:
    """Killed again at each resume, five times at random points (or until it finishes)."""
    _interrupt_repeatedly(tmp_path, sig, jobs, kills=5, seed=100 + int(sig) * 10 + jobs)


def _finish_with_a_worker(proc: subprocess.Popen[str], storage: str, study: Path) -> None:
    """``proc`` (a shared-storage worker) ends well, and every trial is COMPLETE exactly once
    with none left RUNNING."""
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "6/6 trials complete" in stderr
    states = _completions(storage, study)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states
    assert not any(TrialState.RUNNING in s for s in states.values()), states


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_an_interrupted_worker_leaves_its_trials_to_the_next(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """A shared-storage worker: interrupted, it re-queues its trials at once; killed, they
    turn stale after the grace period and the next worker retries them."""
    study = write_tiny(tmp_path, "slow", epochs=40)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    out = tmp_path / "files"
    worker = ["worker", str(study), "--storage", storage, "--run-dir", str(out)]
    timing = ["--heartbeat", "1", "--grace", "3", "--no-stack"]
    assert _kill_at_random(_start(*worker, *timing), out, sig, random.Random(int(sig)))
    states = _completions(storage, study)
    running = sum(TrialState.RUNNING in s for s in states.values())
    if sig == signal.SIGKILL:  # the trial it was training, unless the kill fell between two
        assert running <= 1, states
    else:  # interrupted: re-queued at once
        assert running == 0, states
    _finish_with_a_worker(_start(*worker, *timing), storage, study)


def test_a_trial_popped_without_a_heartbeat_is_retried(tmp_path: Path) -> None:
    """A worker killed between popping a trial and its first heartbeat leaves a RUNNING trial
    that Optuna never calls stale; the next worker retries it after the grace period instead
    of waiting for it for ever (the window is milliseconds wide; here it is made by hand)."""
    study_path = write_tiny(tmp_path, "orphan", epochs=2)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    study, _, _ = find_study(str(study_path))
    sweep = Sweep.create(study, storage, heartbeat=1, grace=2)
    with warnings.catch_warnings():  # Optuna: "heartbeat ... used with Study.optimize"
        warnings.simplefilter("ignore", UserWarning)
        orphan = sweep.optuna.ask()  # popped, as a killed worker leaves it: no heartbeat
    assert sweep.storage.get_trial(orphan._trial_id).state == TrialState.RUNNING
    worker = ["worker", str(study_path), "--storage", storage, "--run-dir", str(tmp_path / "f")]
    proc = _start(*worker, "--heartbeat", "1", "--grace", "2", "--no-stack")
    _finish_with_a_worker(proc, storage, study_path)


def test_a_trial_lost_between_failing_and_requeueing_is_enqueued_on_resume(tmp_path: Path) -> None:
    """A process killed after failing an interrupted trial and before enqueueing its copy
    leaves a trial with no attempt left to run; resuming the run enqueues it again (and only
    it), and every trial then completes exactly once."""
    study_path = write_tiny(tmp_path, "lost", epochs=1)
    study, _, _ = find_study(str(study_path))
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    sweep = Sweep.create(study, storage)
    with warnings.catch_warnings():  # Optuna: "heartbeat ... used with Study.optimize"
        warnings.simplefilter("ignore", UserWarning)
        lost = sweep.optuna.ask()
    sweep.storage.set_trial_user_attr(lost._trial_id, "interrupted", True)
    sweep.storage.set_trial_state_values(lost._trial_id, state=TrialState.FAIL)  # no copy
    assert sweep.recover_local() == 1
    assert sweep.recover_local() == 0  # idempotent: the copy is waiting
    sweep.work(stack=False)
    states = _completions(storage, study_path)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states
