"""Choose on validation, report test once (issue 22, item 5).

The proof: a small multi-configuration study run twice, once with the test labels permuted,
makes exactly the same choices (every objective value Optuna holds, its best trial, the
report's chosen configuration) while its test accuracies differ. Also the default-validation
rule and the objective's name in the storage.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
import torch

from reglab.lab import RunDir, summarize
from reglab.lab.metrics import OBJECTIVES
from reglab.lab.report import write_report
from reglab.lab.search import parse_search
from reglab.lab.settings import data as data_module
from reglab.lab.settings.selection import DEFAULT_VALIDATION, held_out_split
from reglab.lab.settings.studyfile import StudyError, load_study, parse_study
from reglab.lab.sweep import Sweep, optuna_study_name
from reglab.lab.sweep.objective import chosen, named_objective, optuna_value, study_objective

ONE = {
    "name": "s",
    "seeds": [0],
    "data": {"name": "digits", "subset": 100},
    "model": {"sizes": [64, 8, 10]},
    "train": {"epochs": 1},
    "grid": [{"name": "none"}],
}
TWO = {**ONE, "grid": [{"name": "none"}, {"name": "noise", "input_noise": 0.1}]}
#: Three configurations x two seeds on digits, trained enough to differ on validation.
SMALL = """
name = "small"
seeds = [0, 1]
[data]
name = "digits"
subset = 400
[model]
sizes = [64, 32, 10]
[train]
epochs = 10
lr = 0.01
batch_size = 64
[[grid]]
name = "none"
[[grid]]
name = "L2"
rules."fc*".kernel = { class_name = "L2", config = { l2 = { values = [1e-4, 0.1] } } }
"""


# -- the default-validation rule -------------------------------------------------------------
def test_a_study_with_several_configurations_holds_out_validation_by_default() -> None:
    study = parse_study(TWO, "s")
    assert all(p.config.data.validation == DEFAULT_VALIDATION for p in study.points)
    assert study.source["data"]["validation"] == DEFAULT_VALIDATION  # recorded as run
    assert held_out_split(study.points[0].config.data) == "validation"


def test_a_sweep_axis_counts_as_several_configurations() -> None:
    axis = {**ONE, "grid": [{"name": "d", "input_noise": {"values": [0.1, 0.2]}}]}
    assert parse_study(axis, "s").points[0].config.data.validation == DEFAULT_VALIDATION


def test_a_single_configuration_keeps_what_it_says() -> None:
    study = parse_study(ONE, "s")
    assert study.points[0].config.data.validation == 0.0
    assert "validation" not in study.source["data"]
    assert held_out_split(study.points[0].config.data) == "test"


def test_an_explicit_fraction_is_kept() -> None:
    study = parse_study({**TWO, "data": {**TWO["data"], "validation": 0.3}}, "s")
    assert study.points[0].config.data.validation == 0.3


def test_an_explicit_zero_with_several_configurations_is_refused() -> None:
    with pytest.raises(
        StudyError,
        match=r"^s\.data\.validation: must be > 0 when the study chooses among 2 "
        r"configurations \(the sweep chooses on validation, never on test\); leave it out "
        r"for the default 0\.2 \(got 0\)$",
    ):
        parse_study({**TWO, "data": {**TWO["data"], "validation": 0}}, "s")


def test_a_run_directory_is_read_as_it_was_run(tmp_path: Path) -> None:
    """A run recorded before the rule (no validation key) keeps its data split and its
    fingerprint, so it still resumes and reports."""
    run_dir = RunDir(tmp_path / "old")
    run_dir.study_json.parent.mkdir(parents=True)
    run_dir.study_json.write_text(json.dumps(TWO))
    study = run_dir.study()
    assert study.points[0].config.data.validation == 0.0
    assert study.source == TWO
    assert optuna_study_name(study) == optuna_study_name(parse_study(TWO, "s", selection=False))
    assert optuna_study_name(study) != optuna_study_name(parse_study(TWO, "s"))


def test_a_dataset_with_its_own_validation_split_is_left_alone() -> None:
    study = load_study(
        Path(__file__).parents[2] / "src/reglab/lab/studies/language-model-ar-tar.toml"
    )
    assert len(study.points) > 1
    assert study.points[0].config.data.validation == 0.0
    assert held_out_split(study.points[0].config.data) == "validation"
    assert study_objective(study).name == "val_ppl"


@pytest.mark.parametrize(
    ("study", "objective"),
    [
        ("default", "val_acc"),
        ("sparse-autoencoder", "val_recon"),
        ("norm-constraints", "val_mse"),
        ("denoising-pretraining", "val_acc"),  # autoencoders and classifiers: val_acc
    ],
)
def test_every_builtin_study_that_selects_holds_out_validation(study: str, objective: str) -> None:
    parsed = load_study(Path(__file__).parents[2] / f"src/reglab/lab/studies/{study}.toml")
    assert study_objective(parsed).name == objective
    assert held_out_split(parsed.points[0].config.data) == "validation"


def test_an_objective_is_a_validation_metric() -> None:
    # a validation metric, or a statistic of the trained weights (no data at all)
    for name, o in OBJECTIVES.items():
        assert not o.key.startswith("test_"), name
        assert o.key.startswith("val_") if o.source == "validation" else o.source == "model"
    with pytest.raises(
        ValueError,
        match=r"^objective: test metrics never decide; choose on a validation metric \(val_acc, .*\) \(got .test_acc.\)$",
    ):
        study_objective(parse_study(TWO, "s"), "test_acc")
    acc = OBJECTIVES["val_acc"]
    assert optuna_value({"val_acc": 0.5, "test_acc": 0.9}, acc) == 0.5
    assert optuna_value({"test_acc": 0.9}, acc) == -math.inf  # never wins a maximization
    assert optuna_value({"val_recon": None}, OBJECTIVES["val_recon"]) == math.inf


def test_objectives_come_from_one_table_and_never_read_test_labels() -> None:
    assert named_objective("val_recon").direction == "minimize"
    with pytest.raises(ValueError, match=r"^objective: expected one of val_acc, .* \(got 'l0'\)$"):
        named_objective("l0")
    with pytest.raises(
        StudyError,
        match=r"^search\.objectives: test metrics never decide; name a validation metric such "
        r"as 'val_acc' \(got \['val_acc', 'test_acc'\]\)$",
    ):
        parse_search({"objectives": ["val_acc", "test_acc"]})


# -- the proof: permuting the test labels changes no choice ------------------------------------
def _permuted_test_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every dataset the lab loads from here on has its test labels shuffled (seeded)."""
    load = data_module._dataset

    def shuffled(name: str):
        train, (xt, yt) = load(name)
        order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(7))
        return train, (xt, yt[order])

    monkeypatch.setattr(data_module, "_dataset", shuffled)


def _run(tmp_path: Path, name: str) -> dict:
    (tmp_path / "small.toml").write_text(SMALL)
    study = load_study(tmp_path / "small.toml")
    run_dir = RunDir(tmp_path / name)
    run_dir.write_study(study, "")
    storage = f"sqlite:///{tmp_path / name}.db"
    sweep = Sweep.create(study, storage)
    sweep.work(run_dir)
    records = sweep.results()
    summary = summarize(records)
    write_report(run_dir, study, records, len(sweep.trials))
    text = (run_dir.path / "summary.md").read_text()
    choice = re.search(r"Chosen on val_acc \(mean over seeds\): (.*?) with", text)
    loaded = optuna.load_study(study_name=sweep.name, storage=storage)
    values = {
        t.params["trial_key"]: t.value
        for t in loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }
    return {
        "values": values,
        "best": loaded.best_trial.params["trial_key"],
        "chosen": chosen(summary, sweep.objective)["label"],
        "report": choice.group(1) if choice else None,
        "metric_names": loaded.metric_names,
        "direction": loaded.direction,
        "test_acc": {r["key"]: r["metrics"]["test_acc"] for r in records},
        "val_acc": {r["key"]: r["metrics"]["val_acc"] for r in records},
    }


def test_permuting_the_test_labels_changes_no_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _run(tmp_path, "plain")
    _permuted_test_labels(monkeypatch)
    permuted = _run(tmp_path, "permuted")

    assert plain["metric_names"] == ["val_acc"]  # dashboards say val_acc, not "Objective 0"
    assert plain["direction"] == optuna.study.StudyDirection.MAXIMIZE
    assert plain["values"] == plain["val_acc"]  # Optuna holds the validation accuracy itself
    assert len(plain["values"]) == 6
    # The permutation reached the test metrics (else this test could not fail) ...
    drops = [plain["test_acc"][k] - permuted["test_acc"][k] for k in plain["test_acc"]]
    assert all(d != 0 for d in drops), drops
    assert sum(drops) / len(drops) > 0.3, drops
    # ... and no choice moved.
    assert permuted["values"] == plain["values"]
    assert permuted["best"] == plain["best"]
    assert permuted["chosen"] == plain["chosen"]
    assert plain["report"] == plain["chosen"]
    assert permuted["report"] == plain["report"]
