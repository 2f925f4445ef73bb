"""Every value of a study file is validated when it is parsed — before a run directory or a
trial exists — with the key path, the value and what is allowed (issue: the careless user)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.lab import StudyError, find_study, parse_study, run_trial
from tests.lab.conftest import write_one_epoch

BASE = {"name": "s", "grid": [{"name": "none"}]}


def _entry(**entry) -> dict:
    return {**BASE, "grid": [{"name": "a", **entry}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {**BASE, "train": {"epochs": 1.7}},
            r"^s\.train\.epochs: expected an int >= 1 \(got 1\.7\)",
        ),
        ({**BASE, "train": {"epochs": 0}}, r"^s\.train\.epochs: expected an int >= 1 \(got 0\)"),
        ({**BASE, "train": {"batch_size": 0}}, r"^s\.train\.batch_size: expected an int >= 1"),
        ({**BASE, "data": {"subset": -10}}, r"^s\.data\.subset: expected an int >= 0 \(got -10\)"),
        (
            {**BASE, "data": {"subset": math.nan}},
            r"^s\.data\.subset: expected an int >= 0 \(got nan\)",
        ),
        (
            {**BASE, "data": {"subset": 5000}},
            r"^s\.data\.subset: 'digits' has 1347 training rows \(got 5000\)",
        ),
        ({**BASE, "data": {"labels": -5}}, r"^s\.data\.labels: expected an int >= 0 \(got -5\)"),
        (
            {**BASE, "data": {"validation": -0.2}},
            r"^s\.data\.validation: must be a finite number in \[0, 1\) \(got -0\.2\)",
        ),
        (
            {**BASE, "data": {"validation": 1.5}},
            r"^s\.data\.validation: must be a finite number in \[0, 1\) \(got 1\.5\)",
        ),
        (
            _entry(label_smoothing=-0.1),
            r"^s\.grid\[0\]\.label_smoothing\.eps: must be a finite number in \[0, 1\) \(got -0\.1\)",
        ),
        (
            {**BASE, "train": {"lr": -0.01}},
            r"^s\.train\.lr: must be a finite number > 0 \(got -0\.01\)",
        ),
        (
            {**BASE, "train": {"lr": math.nan}},
            r"^s\.train\.lr: must be a finite number > 0 \(got nan\)",
        ),
        (
            {**BASE, "train": {"lr": math.inf}},
            r"^s\.train\.lr: must be a finite number > 0 \(got inf\)",
        ),
        (
            {**BASE, "train": {"momentum": -1}},
            r"^s\.train\.momentum: must be a finite number in \[0, 1\) \(got -1\.0\)",
        ),
        (
            _entry(train={"lr": 0.0}),
            r"^s\.grid\[0\]\.train\.lr: must be a finite number > 0 \(got 0\.0\)",
        ),
        (
            _entry(rules={"conv*": {"kernel": "l2"}}),
            r"^s\.grid\[0\]\.rules: Rule 'conv\*' matches no module of Sequential\. Available module names: '', 'fc0', 'act0'",
        ),
        (
            _entry(ensemble={"members": 0}),
            r"^s\.grid\[0\]\.ensemble\.members: expected an int >= 1 \(got 0\)",
        ),
        (
            {**BASE, "model": {"sizes": [784, 32, 10]}},
            r"^s\.model\.sizes: must start with the 64 input features of 'digits' \(got \[784, 32, 10\]\)",
        ),
        (
            {**BASE, "model": {"sizes": [64, 32, 5]}},
            r"^s\.model\.sizes: must end with the 10 classes of 'digits' \(got \[64, 32, 5\]\)",
        ),
        (
            _entry(
                rules={
                    "fc*": {
                        "kernel": {"class_name": "L2", "config": {"l2": {"log": [1e-5], "num": 3}}}
                    }
                }
            ),
            r'^s\.grid\[0\]\.rules\."fc\*"\.kernel\.config\.l2: \'log\' must be \[low, high\] with 0 < low \(got \[1e-05\]\)',
        ),
        (
            _entry(
                rules={"fc*": {"kernel": {"class_name": "L2", "config": {"l2": {"values": []}}}}}
            ),
            r'^s\.grid\[0\]\.rules\."fc\*"\.kernel\.config\.l2: \'values\' must be a non-empty list \(got \[\]\)',
        ),
        (
            _entry(rules={"fc*": {"kernel": {"class_name": "ExpAbs", "config": {"scale": 1.0}}}}),
            r"^s\.grid\[0\]\.rules\.\"fc\*\"\.kernel: ExpAbs has no argument 'scale'; its config takes coefficient",
        ),
        (
            {**BASE, "model": {"kind": "mlp", "corruption": "mask"}},
            r"^s\.model\.corruption: does not apply to model\.kind = 'mlp'",
        ),
        (  # cross-table checks name the table the value was written in
            _entry(model={"sizes": [32, 10]}),
            r"^s\.grid\[0\]\.model\.sizes: must start with the 64 input features of 'digits'",
        ),
        (
            {**BASE, "model": {"sizes": [32, 10]}},
            r"^s\.model\.sizes: must start with the 64 input features of 'digits'",
        ),
        (
            {
                **BASE,
                "model": {"kind": "cnn"},
                "grid": [{"name": "a", "model": {"channels": [8] * 6}}],
            },
            r"^s\.grid\[0\]\.model\.channels: 6 downsampling blocks do not fit 8×8 images",
        ),
        (
            _entry(early_stopping={"criterion": "gl"}),
            r"^s\.grid\[0\]\.early_stopping: The 'alpha' parameter of EarlyStopping must be a number >= 0 with criterion='gl'",
        ),
    ],
)
def test_bad_values_are_caught_at_parse_time_with_their_key_path(raw, message) -> None:
    with pytest.raises(StudyError, match=message):
        parse_study(raw, origin="s")


_AUTOENCODER = {"kind": "autoencoder", "sizes": [64, 16]}
_TEACHER = {"data": {"name": "teacher"}, "model": {"kind": "linear"}}


@pytest.mark.parametrize(
    ("study", "entry", "kind"),
    [
        ({"model": _AUTOENCODER}, {"label_smoothing": 0.1}, "autoencoder"),
        ({"model": _AUTOENCODER}, {"augment": {"translate": 0.1}}, "autoencoder"),
        ({"model": _AUTOENCODER}, {"mix": {"kind": "mixup"}}, "autoencoder"),
        ({"model": _AUTOENCODER}, {"input_noise": 0.1}, "autoencoder"),
        (_TEACHER, {"label_smoothing": 0.1}, "linear"),
        (_TEACHER, {"weight_noise": 0.05}, "linear"),
        (_TEACHER, {"early_stopping": {"patience": 2}}, "linear"),
        (_TEACHER, {"post_hoc_stopping": {}}, "linear"),
        (_TEACHER, {"ensemble": {"members": 3}}, "linear"),
    ],
)
def test_classifier_techniques_are_refused_where_they_would_be_ignored(study, entry, kind) -> None:
    # The autoencoder, linear and language runners never read these tables: accepting them
    # would train and report a point whose technique did nothing.
    key = next(iter(entry))
    raw = {**BASE, **study, "grid": [{"name": "a", **entry}]}
    if key in ("early_stopping", "post_hoc_stopping"):  # they need validation rows
        raw["data"] = {**raw["data"], "validation": 0.2}
    with pytest.raises(
        StudyError, match=rf"^s\.grid\[0\]\.{key}: applies to classifier trials .*not '{kind}'"
    ):
        parse_study(raw, origin="s")


def test_a_level_of_zero_is_off_on_any_kind() -> None:
    raw = {**BASE, "model": _AUTOENCODER, "grid": [{"name": "a", "input_noise": 0.0}]}
    parse_study(raw, origin="s")  # no error: 0 is the default, nothing would be ignored


def test_label_smoothing_form_alone_trains_with_the_default_eps() -> None:
    """``label_smoothing = { form = "others" }`` is eps 0.1 of that form, in validation and in
    training alike (it used to train with eps 0: plain cross-entropy)."""
    study = parse_study(
        {
            **BASE,
            "data": {"subset": 200},
            "model": {"sizes": [64, 16, 10]},
            "train": {"epochs": 1},
            "grid": [{"name": "a", "label_smoothing": {"form": "others"}}],
        },
        origin="s",
    )
    config = study.points[0].config
    assert config.label_smoothing.eps == 0.1
    assert config.label_smoothing.form == "others"
    from reglab.lab.work.classifier import criterion
    from reglab.losses import LabelSmoothingCrossEntropy

    loss = criterion(config)
    assert isinstance(loss, LabelSmoothingCrossEntropy)
    assert (loss.eps, loss.form) == (0.1, "others")
    assert run_trial(config, 0).metrics["train_loss"] > 0


def test_a_study_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(
        'name = "s"\ndescription = "caf\xe9"\n[[grid]]\nname = "a"\n'.encode("latin-1")
    )
    with pytest.raises(StudyError, match=rf"^{path}: not UTF-8 text \(byte 29 is 0xe9\)"):
        find_study(str(path))


def _run(*args: str) -> int:
    return main(["run", *args, "--no-progress"])


def test_bad_study_leaves_no_run_directory(tmp_path: Path, capsys) -> None:
    study = tmp_path / "bad.toml"
    study.write_text('name = "bad"\n[train]\nepochs = 0\n[[grid]]\nname = "a"\n')
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out)) == 2
    assert "bad.train.epochs: expected an int >= 1 (got 0)" in capsys.readouterr().err
    assert not out.exists()


def test_resume_refuses_another_study_or_overrides(tmp_path: Path, capsys) -> None:
    study = write_one_epoch(tmp_path)
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out)) == 0
    capsys.readouterr()
    assert _run("--resume", str(out), "--epochs", "3") == 2
    assert "reglab run --resume reuses the run directory's study; drop --epochs" in (
        capsys.readouterr().err
    )
    assert _run(str(study), "--resume", str(out)) == 2
    assert "drop STUDY" in capsys.readouterr().err
    assert json.loads((out / "study.json").read_text())["train"]["epochs"] == 1
