"""Sweeps end to end: run directory, report, determinism, resume after SIGKILL, --jobs,
and PostgreSQL workers (CI runs a real server; locally the test skips without one)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from safetensors.torch import load_file

from reglab.cli import main
from reglab.lab import find_study, run_trial, trials
from reglab.lab.sweep import optuna_study_name
from tests.lab.conftest import write_tiny


def _reglab(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "reglab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _completions(storage: str, study_path: Path) -> dict[str, list[TrialState]]:
    study, _, _ = find_study(str(study_path))
    loaded = optuna.load_study(study_name=optuna_study_name(study), storage=storage)
    states: dict[str, list[TrialState]] = {t.key: [] for t in trials(study)}
    for t in loaded.get_trials(deepcopy=False):
        key = t.system_attrs.get("fixed_params", {}).get("trial_key")
        if key is not None:
            states[key].append(t.state)
    return states


def _check_run_dir(out: Path, n_trials: int) -> None:
    assert not list(out.rglob(".*.tmp")), "partial files left behind"
    folders = sorted((out / "trials").iterdir())
    assert len(folders) == n_trials
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert 0 < metrics["test_acc"] <= 1
        assert (folder / "history.csv").read_text().startswith("penalty,") or (
            folder / "history.csv"
        ).read_text().startswith("loss,")
        assert load_file(folder / "model.safetensors")["fc0.weight"].shape == (32, 64)


def test_sweep_end_to_end_with_report(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(tiny_study), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "6/6 trials complete" in printed
    assert "L2 l2=0.01" in printed
    _check_run_dir(out, 6)
    html = (out / "report.html").read_text()
    shown = re.findall(r'<figure id="fig-([^"]+)"', html)  # inline SVG, with hover values
    assert shown == ["results", "learning_curves", "weights", "reliability", "coefficients"]
    assert html.count("<svg") == 5
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert all(s.startswith(("data:", "#")) for s in links), links  # self-contained
    for png in (
        "results.png",
        "learning_curves.png",
        "coefficients.png",
        "weights.png",
        "reliability.png",
    ):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "| L2 l2=0.0001 | 2 |" in (out / "summary.md").read_text()
    states = _completions(f"sqlite:///{out / 'storage.db'}", tiny_study)
    assert all(s == [TrialState.COMPLETE] for s in states.values())
    # Re-running into the finished directory runs nothing; `reglab report` rewrites the report.
    assert main(["run", str(tiny_study), "--out", str(out), "--no-progress"]) == 0
    assert "6/6 trials complete" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert all(
        s == [TrialState.COMPLETE]
        for s in _completions(f"sqlite:///{out / 'storage.db'}", tiny_study).values()
    )


def test_a_trial_is_deterministic_on_cpu(tiny_study: Path) -> None:
    study, _, _ = find_study(str(tiny_study))
    trial = trials(study)[3]
    a = run_trial(trial.point.config, trial.seed)
    b = run_trial(trial.point.config, trial.seed)
    a.metrics.pop("seconds")
    b.metrics.pop("seconds")
    assert a.metrics == b.metrics
    for ha, hb in zip(a.history, b.history, strict=True):
        assert {k: v for k, v in ha.items() if "time" not in k} == {
            k: v for k, v in hb.items() if "time" not in k
        }


def test_resume_after_sigkill_runs_every_trial_exactly_once(tmp_path: Path) -> None:
    study = write_tiny(tmp_path, "slow", epochs=60)
    out = tmp_path / "run"
    # --no-stack: trials finish one by one (stacked, all 6 are one stack whose trials are
    # stored in one burst, which a fast machine can finish between two polls)
    proc = _reglab("run", str(study), "--out", str(out), "--no-progress", "--no-stack")
    deadline = time.monotonic() + 120
    while len(list(out.glob("trials/*/metrics.json"))) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("trials/*/metrics.json")))
    assert done < 6, "the sweep finished before it could be killed"
    resumed = _reglab("run", "--resume", str(out), "--no-progress")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resuming" in stdout
    states = _completions(f"sqlite:///{out / 'storage.db'}", study)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states
    assert not any(TrialState.RUNNING in s for s in states.values())
    _check_run_dir(out, 6)


def test_jobs_run_trials_in_parallel_processes(tiny_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    proc = _reglab("run", str(tiny_study), "--out", str(out), "--jobs", "2", "--no-progress")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "6/6 trials complete" in stdout
    # no terminal: the coordinator prints one line per trial its workers finish, each once
    lines = re.findall(r"^\[(\d)/6\] .* seed \d: val % ", stdout, re.M)
    assert sorted(lines) == ["1", "2", "3", "4", "5", "6"], stdout
    states = _completions(f"sqlite:///{out / 'storage.db'}", tiny_study)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states


def test_cli_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-study"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reglab run: error: no-such-study: no such study file")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[grid]]\nname = "a"\nrules."fc*".kernel = "l5"\n')
    assert main(["run", str(bad)]) == 2
    assert (
        "bad.grid[0].rules.\"fc*\".kernel: Could not interpret penalty identifier 'l5'"
        in capsys.readouterr().err
    )
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a reglab run directory" in capsys.readouterr().err
    assert main(["studies"]) == 0
    assert "default" in capsys.readouterr().out
    assert main(["show", "default"]) == 0
    assert "8 grid points x 3 seeds = 24 trials" in capsys.readouterr().out


POSTGRES = os.environ.get("REGLAB_TEST_POSTGRES")


@pytest.mark.skipif(
    not POSTGRES and not os.environ.get("REGLAB_REQUIRE_POSTGRES"),
    reason="set REGLAB_TEST_POSTGRES=postgresql://... to run (CI does)",
)
def test_postgres_workers_share_a_study_and_survive_a_killed_worker(tmp_path: Path) -> None:
    assert POSTGRES, "REGLAB_REQUIRE_POSTGRES is set but REGLAB_TEST_POSTGRES is not"
    study = write_tiny(tmp_path, f"pg-{uuid.uuid4().hex[:8]}", epochs=80)
    common = ["--storage", POSTGRES, "--heartbeat", "1", "--grace", "4"]
    victim = _reglab("worker", str(study), "--run-dir", str(tmp_path / "a"), *common)
    # Kill the first worker in the middle of its first trial.
    line = victim.stderr.readline()
    assert line.startswith("worker: start"), line + victim.stderr.read()
    survivor = _reglab("worker", str(study), "--run-dir", str(tmp_path / "b"), *common)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, stderr = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, stderr
    states = _completions(POSTGRES, study)
    assert all(s.count(TrialState.COMPLETE) == 1 for s in states.values()), states
    assert sum(s.count(TrialState.FAIL) for s in states.values()) >= 1  # the killed attempt
    assert "6/6 trials complete" in stderr


def test_run_writes_tensorboard_event_files_per_trial(tiny_study: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    out = tmp_path / "run"
    assert (
        main(
            ["run", str(tiny_study), "--out", str(out), "--tensorboard", str(logs), "--no-progress"]
        )
        == 0
    )
    folders = sorted(p.name for p in logs.iterdir())
    assert folders == sorted(p.name for p in (out / "trials").iterdir())
    events = EventAccumulator(str(logs / "L2_l2=0.0001__seed0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"step/loss", "step/penalty/fc0.kernel", "epoch/val_loss"} <= tags
