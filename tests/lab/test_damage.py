"""Diverging training and damaged trial files in the lab: a trial whose loss turns non-finite
is stored as FAIL with its reason (never COMPLETE with NaN metrics), the report renders and
says "diverged: <reason>", metrics files are strict JSON, and checkpoints are checked against
the trial's model before they are drawn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from safetensors.torch import save_file
from torch import nn

from reglab.cli import main
from reglab.lab.metrics import strict_metrics
from reglab.lab.report.summaries import summarize
from tests.lab.conftest import write_one_epoch

STUDY = """
name = "d"
seeds = [0, 1]
[data]
subset = 200
[model]
sizes = [64, 16, 10]
[train]
epochs = 2
[[grid]]
name = "ok"
[[grid]]
name = "boom"
train.lr = 1e30
"""


def _run(*args: str) -> int:
    return main(["run", *args, "--no-progress"])


@pytest.fixture
def diverged_run(tmp_path: Path, capsys) -> tuple[Path, str]:
    study = tmp_path / "d.toml"
    study.write_text(STUDY)
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out), "--no-stack") == 0
    return out, capsys.readouterr().out


def _states(out: Path) -> dict[str, optuna.trial.FrozenTrial]:
    url = f"sqlite:///{out / 'storage.db'}"
    (name,) = optuna.get_all_study_names(url)
    return {
        t.params["trial_key"]: t
        for t in optuna.load_study(study_name=name, storage=url).get_trials()
        if "trial_key" in t.params
    }


def test_a_diverged_trial_is_stored_as_fail_with_its_reason(diverged_run) -> None:
    out, console = diverged_run
    assert "2/4 trials complete, 2 diverged" in " ".join(console.split())
    trials = _states(out)
    for seed in (0, 1):
        boom = trials[f"boom__seed{seed}"]
        assert boom.state == optuna.trial.TrialState.FAIL
        assert boom.user_attrs["diverged"] == "loss is nan at step 2 (epoch 1)"
        assert json.loads((out / f"trials/boom__seed{seed}/diverged.json").read_text()) == {
            "diverged": "loss is nan at step 2 (epoch 1)"
        }
        assert not (out / f"trials/boom__seed{seed}/metrics.json").exists()
        assert trials[f"ok__seed{seed}"].state == optuna.trial.TrialState.COMPLETE


def test_the_report_says_diverged_and_still_renders(diverged_run, capsys) -> None:
    out, _ = diverged_run
    summary = (out / "summary.md").read_text()
    assert "2 of 4 trials complete, 2 diverged." in summary
    first, boom = [line for line in summary.splitlines() if line.startswith("| boom |")]
    assert first.endswith("| diverged: no seed trained to the end |"), first  # first screen
    assert boom.endswith("| diverged: loss is nan at step 2 (epoch 1) |"), boom
    assert "diverged: loss is nan at step 2 (epoch 1)" in (out / "report.html").read_text()
    assert main(["report", str(out)]) == 0
    assert "4/4 trials" in capsys.readouterr().out


def test_a_diverged_trial_is_not_retried_on_resume(diverged_run, capsys) -> None:
    out, _ = diverged_run
    assert _run("--resume", str(out)) == 0
    assert "resuming: 4 finished, 0 to run" in " ".join(capsys.readouterr().out.split())
    url = f"sqlite:///{out / 'storage.db'}"
    (name,) = optuna.get_all_study_names(url)
    attempts = [t for t in optuna.load_study(study_name=name, storage=url).get_trials() if t.params]
    assert len(attempts) == 4, "a trial was trained again"


def test_metrics_are_strict_json_with_the_non_finite_ones_named() -> None:
    stored = strict_metrics({"test_acc": 0.5, "test_nll": math.inf, "ece": math.nan})
    assert stored == {
        "test_acc": 0.5,
        "test_nll": None,
        "ece": None,
        "nonfinite": {"test_nll": "inf", "ece": "nan"},
    }
    json.dumps(stored, allow_nan=False)
    rows = summarize(
        [
            {
                "key": f"a{s}",
                "point": "a",
                "label": "a",
                "entry": 0,
                "seed": s,
                "params": {},
                "metrics": stored if s == 0 else {"test_acc": 0.7, "test_nll": 1.0, "ece": 0.1},
            }
            for s in (0, 1)
        ]
    )
    assert rows[0]["metrics"]["test_acc"][0] == pytest.approx(0.6)
    assert rows[0]["notes"] == "test_nll inf (seed 0); ece nan (seed 0)"


@pytest.fixture
def finished_run(tmp_path: Path, capsys) -> Path:
    study = write_one_epoch(tmp_path)
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out)) == 0
    capsys.readouterr()
    return out


def test_a_checkpoint_of_another_model_is_not_drawn(finished_run: Path, capsys) -> None:
    checkpoint = finished_run / "trials/a__seed0/model.safetensors"
    other = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    save_file({f"fc{i // 2}.{n.split('.')[1]}": t.detach().contiguous()
               for i, (n, t) in enumerate(other.named_parameters())}, str(checkpoint))  # fmt: skip
    assert main(["report", str(finished_run)]) == 0
    note = f"Note: {checkpoint}: not the trial's model (fc0.weight is (32, 64), the model's is (8, 64)); not drawn"
    summary = (finished_run / "summary.md").read_text()
    assert note in summary
    assert "weights.png" not in summary, "the foreign checkpoint was drawn"


def test_a_corrupt_checkpoint_is_named(finished_run: Path) -> None:
    checkpoint = finished_run / "trials/a__seed0/model.safetensors"
    checkpoint.write_bytes(b"\x00" * 64)
    assert main(["report", str(finished_run)]) == 0
    assert (
        f"Note: {checkpoint}: not a readable safetensors file"
        in (finished_run / "summary.md").read_text()
    )


def test_saved_weights_are_the_same_bytes_every_time(tmp_path: Path) -> None:
    """safetensors writes metadata in hash-map order (it changes from call to call); the run
    directory sorts it, so one trial's weights are one file's bytes, and still readable."""
    import torch
    from safetensors import safe_open

    from reglab.lab.rundir import RunDir
    from reglab.lab.work.training import TrialOutcome

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    run_dir = RunDir(tmp_path)
    payloads = set()
    for _ in range(12):  # unsorted, two metadata keys differ in order half the time
        run_dir.save_trial("t", TrialOutcome({}, [], net, None), {"test_acc": 1.0})
        payloads.add(run_dir.trial_file("t", "model.safetensors").read_bytes())
    assert len(payloads) == 1
    with safe_open(str(run_dir.trial_file("t", "model.safetensors")), framework="pt") as f:
        assert f.metadata() == {"tied": "{}", "trial": "t"}
        for name, value in net.state_dict().items():
            assert torch.equal(f.get_tensor(name), value)
