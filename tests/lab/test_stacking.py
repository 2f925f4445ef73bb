"""Stacked trials: trials that differ in seed and penalty coefficients train as one model
stack and report what each would have reported alone (to the tolerance stated in
``reglab.lab.stacking``); the CLI stacks by default, ``--no-stack`` turns it off, and
``reglab report`` reads the storage without writing to it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.lab import find_study, parse_study, run_trial
from reglab.lab.work.stacking import run_stacked, stack_key

STUDY = {
    "name": "stk",
    "seeds": [0, 1],
    "data": {"name": "digits", "subset": 400, "validation": 0.2},
    "model": {"sizes": [64, 32, 10]},
    "train": {"epochs": 6, "batch_size": 32},
    "grid": [
        {"name": "none"},
        {"name": "L2", "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 1e-3}}}}},
        {
            "name": "L1",
            "rules": {
                "fc0": {"kernel": "l1"},
                "fc1": {"bias": {"class_name": "L2", "config": {"l2": 1e-2}}},
            },
        },
        {
            "name": "act",
            "rules": {"act0": {"activity": {"class_name": "L1", "config": {"l1": 1e-3}}}},
        },
        {"name": "sgd", "train": {"optimizer": "sgd", "lr": 0.05}},
        {
            "name": "maxnorm",
            "rules": {
                "fc*": {
                    "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 1.0}}
                }
            },
        },
        {"name": "dropout", "model": {"dropout": 0.3}},
        {"name": "smooth", "label_smoothing": {"eps": 0.1, "form": "others"}},
    ],
}

#: Stacked members differ from training alone by float rounding (batched GEMMs, the fused
#: optimizer step) only; after training that shows as a test row or two (1 row of 450).
ACCURACY_TOLERANCE = 0.011
RELATIVE_TOLERANCE = 0.02


def test_which_points_stack_together() -> None:
    study = parse_study(STUDY, "stk")
    keys = {p.key: stack_key(p.config) for p in study.points}
    assert keys["none"] == keys["L2"] == keys["L1"] == keys["act"] is not None
    assert keys["sgd"] is not None
    assert keys["sgd"] != keys["none"]
    assert keys["maxnorm"] is not None
    assert keys["maxnorm"] != keys["none"]
    assert keys["smooth"] is not None
    assert keys["smooth"] != keys["none"]
    # dropout stacks (masks drawn per member: tests/lab/test_stacked_randomness.py), with
    # trials of the same dropout rate only
    assert keys["dropout"] is not None
    assert keys["dropout"] != keys["none"]


@pytest.mark.parametrize("group", [["none", "L2", "L1", "act"], ["sgd"], ["maxnorm"], ["smooth"]])
def test_a_stacked_trial_reports_what_it_would_alone(group: list[str]) -> None:
    study = parse_study(STUDY, "stk")
    members = [(t.point.config, t.seed) for t in study.trials if t.point.key in group]
    stacked = run_stacked(members)
    for (config, seed), together in zip(members, stacked, strict=True):
        alone = run_trial(config, seed)
        for key in ("train_acc", "test_acc", "gap"):
            assert together.metrics[key] == pytest.approx(
                alone.metrics[key], abs=ACCURACY_TOLERANCE
            )
        for key in ("test_loss", "weight_norm", "max_unit_norm", "test_ece_ts"):
            assert together.metrics[key] == pytest.approx(
                alone.metrics[key], rel=RELATIVE_TOLERANCE
            )
        assert [r["val_loss"] for r in together.history] == pytest.approx(
            [r["val_loss"] for r in alone.history], rel=RELATIVE_TOLERANCE
        )
        assert together.extra["stacked"] == len(members)
        # A member has no time of its own: the stack's time, the same in every member.
        assert "seconds" not in together.metrics
        assert together.metrics["stack_size"] == len(members)
        assert together.metrics["stack_seconds"] == stacked[0].metrics["stack_seconds"] > 0


def _storage_trials(out: Path) -> list[dict]:
    import optuna

    summaries = optuna.get_all_study_summaries(f"sqlite:///{out / 'storage.db'}")
    study = optuna.load_study(
        study_name=summaries[0].study_name, storage=f"sqlite:///{out / 'storage.db'}"
    )
    return [t.user_attrs for t in study.get_trials() if t.state.name == "COMPLETE"]


def test_stacked_run_no_stack_run_and_a_read_only_report(tmp_path: Path) -> None:
    small = json.loads(json.dumps(STUDY))
    small["grid"] = small["grid"][:2]
    small["train"]["epochs"] = 2
    study_file = tmp_path / "stk.toml"
    study_file.write_text(_toml(small))
    stacked, alone = tmp_path / "stacked", tmp_path / "alone"
    assert main(["run", str(study_file), "--out", str(stacked), "--no-progress"]) == 0
    assert main(["run", str(study_file), "--out", str(alone), "--no-progress", "--no-stack"]) == 0
    assert {a.get("stacked") for a in _storage_trials(stacked)} == {4}
    assert {a.get("stacked") for a in _storage_trials(alone)} == {None}
    before = hashlib.sha256((stacked / "storage.db").read_bytes()).hexdigest()
    (stacked / "report.html").unlink()
    assert main(["report", str(stacked)]) == 0
    assert (stacked / "report.html").is_file()
    assert hashlib.sha256((stacked / "storage.db").read_bytes()).hexdigest() == before
    study, _, _ = find_study(str(study_file))
    assert len(study.trials) == 4


def _toml(study: dict) -> str:
    """A study as TOML (the few shapes this test uses)."""

    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v)

    lines = [f'name = "{study["name"]}"', f"seeds = {study['seeds']}"]
    for section in ("data", "model", "train"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in study[section].items()]
    for entry in study["grid"]:
        lines.append("[[grid]]")
        lines += [f'"{k}" = {value(v)}' for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def test_stacked_and_lone_trials_share_one_loop_and_log_the_same_history() -> None:
    """One training loop (``reglab.fit``) for both: a member's per-epoch training and held-out
    loss and accuracy are those of the same trial trained alone, up to float32 rounding of the
    batched GEMMs (three epochs: ~1e-6 relative; the tolerance is 1e-4)."""
    study = parse_study({**STUDY, "train": {"epochs": 3, "batch_size": 32}}, "stk")
    points = {p.key: p.config for p in study.points}
    members = [(points["L2"], 1), (points["none"], 0), (points["L1"], 2)]
    stacked = run_stacked(members)
    for (config, seed), member in zip(members, stacked, strict=True):
        alone = run_trial(config, seed).history
        assert [set(row) for row in member.history] == [
            {"loss", "acc", "val_loss", "val_acc", "step_time", "epoch_time", "epoch"}
        ] * 3
        for epoch, (got, want) in enumerate(zip(member.history, alone, strict=True)):
            for key in ("loss", "acc", "val_loss", "val_acc", "epoch"):
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (
                    f"seed {seed}, epoch {epoch}, {key}"
                )


CNN = {
    "name": "stk-cnn",
    "seeds": [0, 1],
    "data": {"name": "digits", "subset": 300, "validation": 0.2},
    "model": {"kind": "cnn", "channels": [4, 8]},
    "train": {"epochs": 2, "batch_size": 32},
    "grid": [
        {"name": "none"},
        {"name": "dropblock", "model": {"drop_block": 0.1}},
        {"name": "spatial", "model": {"spatial_dropout": 0.1}},
        {
            "name": "maxnorm",
            "rules": {
                "conv*": {
                    "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 3.0}}
                }
            },
        },
        {"name": "resnet", "model": {"kind": "resnet", "stages": [1], "width": 4}},
    ],
}


def test_cnn_trials_run_alone() -> None:
    """Measured slower stacked (vmap) than alone end to end on CPU (augmentation-cnn 0.30x
    wall; docs/guide/performance.md, "Stacked studies"), so the cnn kind is not stackable."""
    study = parse_study(CNN, "stk-cnn")
    assert all(stack_key(p.config) is None for p in study.points)
