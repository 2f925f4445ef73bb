"""Study files: parsing, every validation error with its key path, grid expansion."""

from __future__ import annotations

import pytest
import tomllib

from reglab.lab import StudyError, builtin_studies, expand, find_study, parse_study, trials
from reglab.lab.settings.studyfile import axis_values

BASE = {"name": "s", "grid": [{"name": "none"}]}


def _parse(**changes):
    return parse_study({**BASE, **changes})


def test_defaults_and_trials() -> None:
    study = _parse(seeds=[3, 4])
    assert study.points[0].config.data.name == "digits"
    assert study.points[0].config.train.epochs == 30
    assert [t.key for t in trials(study)] == ["none__seed3", "none__seed4"]


def test_log_range_expansion() -> None:
    assert axis_values("x", {"log": [1e-5, 1e-1], "num": 5}) == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert axis_values("x", {"log": [1e-3, 1e-3], "num": 1}) == [1e-3]
    assert axis_values("x", {"values": [0.1, 0.5]}) == [0.1, 0.5]


def test_cross_and_zip() -> None:
    entry = {
        "name": "reg",
        "model": {"dropout": {"values": [0.1, 0.5]}},
        "rules": {
            "fc*": {"kernel": {"class_name": "L2", "config": {"l2": {"values": [1e-3, 1e-2]}}}}
        },
    }
    crossed = expand(parse_study({**BASE, "grid": [entry]}))
    assert len(crossed) == 4
    assert crossed[0].config.model.dropout == 0.1
    assert crossed[0].config.rules_mapping()["fc*"]["kernel"]["config"]["l2"] == 1e-3
    assert crossed[0].label == "reg dropout=0.1 l2=0.001"
    zipped = expand(parse_study({**BASE, "grid": [{**entry, "mode": "zip"}]}))
    assert [p.params for p in zipped] == [
        {"model.dropout": 0.1, "rules.fc*.kernel.l2": 1e-3},
        {"model.dropout": 0.5, "rules.fc*.kernel.l2": 1e-2},
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"name": "s"},
            r"^s\.grid: expected a non-empty array of \[\[grid\]\] tables \(got None\)",
        ),
        (
            {**BASE, "epochs": 3},
            r"^s\.epochs: unknown key; allowed: baseline, data, description, grid, model, name, seeds, "
            r"train",
        ),
        (
            {**BASE, "seeds": [1, 1]},
            r"^s\.seeds: expected a list of distinct ints >= 0 \(got \[1, 1\]\)",
        ),
        (
            {**BASE, "data": {"name": "cifar"}},
            r"^s\.data\.name: expected one of digits, mnist, .*patches.* \(got 'cifar'\)",
        ),
        ({**BASE, "train": {"lr": "fast"}}, r"^s\.train\.lr: expected a number \(got 'fast'\)"),
        (
            {**BASE, "train": {"optimizer": "rmsprop"}},
            r"^s\.train\.optimizer: expected 'adam', 'adamw', 'sgd' or 'sam'",
        ),
        (
            {**BASE, "model": {"depth": 3}},
            r"^s\.model\.depth: unknown key; allowed: activation, batch_norm, block_size, channels",
        ),
        (
            {**BASE, "grid": [{"name": "a", "rules": {"fc*": {"kernel": "l3"}}}]},
            r"^s\.grid\[0\]\.rules\.\"fc\*\"\.kernel: Could not interpret penalty identifier 'l3'",
        ),
        (
            {
                **BASE,
                "grid": [
                    {
                        "name": "a",
                        "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": -1}}}},
                    }
                ],
            },
            r"^s\.grid\[0\]\.rules\.\"fc\*\"\.kernel: The 'l2' parameter of L2 must be a finite number >= 0\. Got -1\.0 instead",
        ),
        (
            {**BASE, "grid": [{"name": "a", "rules": {"fc*": {"kernal": "l2"}}}]},
            r"^s\.grid\[0\]\.rules\.\"fc\*\"\.kernal: unknown key; allowed: activity, activity_reduction, bias",
        ),
        (
            {**BASE, "grid": [{"name": "a"}, {"name": "a"}]},
            r"^s\.grid\[1\]\.name: grid names must be unique",
        ),
        (
            {**BASE, "grid": [{"name": "a", "mode": "both"}]},
            r"^s\.grid\[0\]\.mode: expected 'cross' or 'zip'",
        ),
        (
            {**BASE, "grid": [{"name": "a", "train": {"lr": {"log": [0, 1], "num": 3}}}]},
            r"^s\.grid\[0\]\.train\.lr: 'log' must be \[low, high\] with 0 < low",
        ),
        (
            {**BASE, "grid": [{"name": "a", "early_stopping": {"patience": 3}}]},
            r"^s\.grid\[0\]\.early_stopping: needs data\.validation > 0",
        ),
        (
            {**BASE, "grid": [{"name": "a", "model": {"dropout": {"values": []}}}]},
            r"^s\.grid\[0\]\.model\.dropout: 'values' must be a non-empty list",
        ),
        (
            {**BASE, "grid": [{"name": "a", "label_smoothing": {"eps": 0.1, "form": "soft"}}]},
            r"^s\.grid\[0\]\.label_smoothing\.form: expected 'uniform' or 'others' \(got 'soft'\)",
        ),
        (
            {**BASE, "grid": [{"name": "a", "label_smoothing": {"epsilon": 0.1}}]},
            r"^s\.grid\[0\]\.label_smoothing\.epsilon: unknown key; allowed: eps, form",
        ),
        (
            {**BASE, "grid": [{"name": "a", "semi_supervised": {}, "multitask": {}}]},
            r"^s\.grid\[0\]\.semi_supervised: cannot be combined with multitask",
        ),
        (
            {**BASE, "grid": [{"name": "a", "post_hoc_stopping": {"gl": [2]}}]},
            r"^s\.grid\[0\]\.post_hoc_stopping: needs data\.validation > 0",
        ),
        (
            {**BASE, "grid": [{"name": "a", "norm_bound": {"k": 3}}]},
            r"^s\.grid\[0\]\.norm_bound\.k: unknown key; allowed: lr_dual, max_norm",
        ),
        (
            {**BASE, "data": {"name": "teacher"}},
            r"^s\.model\.kind: the 'teacher' data and model\.kind = 'linear' go together",
        ),
        (
            {**BASE, "grid": [{"name": "a", "norm_bound": {"lr_dual": 0.1}}]},
            r"^s\.grid\[0\]\.norm_bound\.max_norm: expected a number \(the bound k\) \(got None\)",
        ),
        (
            {**BASE, "grid": [{"name": "a", "pretrain": {"kind": "rbm"}}]},
            r"^s\.grid\[0\]\.pretrain\.kind: expected 'autoencoder' or 'denoising' \(got 'rbm'\)",
        ),
        (
            {
                **BASE,
                "data": {"validation": 0.2},
                "grid": [{"name": "a", "post_hoc_stopping": {"gl": 2}}],
            },
            r"^s\.grid\[0\]\.post_hoc_stopping\.gl: expected a list of thresholds > 0 \(got 2\)",
        ),
        (
            {
                **BASE,
                "data": {"name": "gutenberg"},
                "model": {"kind": "lstm-lm", "options": {"hidden": 64}},
            },
            r"^s\.model\.options\.hidden: unknown key; allowed: bptt, dropout_embedding, .*hidden_size",
        ),
        (
            {**BASE, "model": {"kind": "lstm-lm"}},
            r"^s\.model\.kind: the 'gutenberg' data and model\.kind = 'lstm-lm' go together",
        ),
    ],
)
def test_validation_errors_name_the_key_path(raw, message) -> None:
    with pytest.raises(StudyError, match=message):
        parse_study(raw, origin="s")


def test_zip_needs_equal_lengths() -> None:
    entry = {
        "name": "z",
        "mode": "zip",
        "model": {"dropout": {"values": [0.1, 0.2]}},
        "train": {"lr": {"values": [1e-3]}},
    }
    with pytest.raises(StudyError, match=r"mode 'zip' needs axes of equal length \(got \[2, 1\]\)"):
        expand(parse_study({**BASE, "grid": [entry]}))


def test_builtin_studies_parse() -> None:
    studies = builtin_studies()
    assert "default" in studies
    for name, text in studies.items():
        study = parse_study(tomllib.loads(text), name)
        assert expand(study)
    default, _, _ = find_study("default")
    assert len(trials(default)) == 24
    with pytest.raises(
        StudyError, match=r"no such study file or built-in study; built-in studies: .*default"
    ):
        find_study("nope")
