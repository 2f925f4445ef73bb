"""The lab on the user's own data and model, tried as a new user would: a CSV, an ``.npz``, a
folder of PNGs and a ``save_to_disk`` Hugging Face dataset, each with a factory model from a
module in the working directory (or beside the study file), run with ``reglab run`` and with
``reglab.lab.run_study``, each producing a report. A start that fails leaves no run
directory."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reglab._validation import InvalidParameterError
from reglab.cli import main
from reglab.lab import StudyError, find_study, run_study, run_trial

#: A user's model module: a factory for rows, and one for images that uses image_shape.
MODELS = """
from torch import nn


def mlp(features, classes, image_shape=None, hidden=16):
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def convnet(features, classes, image_shape=None, width=4):
    c, h, w = image_shape
    return nn.Sequential(
        nn.Unflatten(1, image_shape),
        nn.Conv2d(c, width, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * h * w, classes),
    )


def no_arguments():
    return nn.Linear(64, 10)


def not_a_module(features, classes, image_shape=None):
    return "a string"
"""

STUDY = """
name = "{name}"
seeds = [0]

[data]
format = "{format}"
path = "{path}"
validation = 0.2
{extra}

[model]
kind = "factory"
factory = "{factory}"

[train]
epochs = 1
batch_size = 32

[[grid]]
name = "none"

[[grid]]
name = "L2"
rules."*".kernel = {{ class_name = "L2", config = {{ l2 = 1e-3 }} }}
"""


def _digits(n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` scikit-learn digits: pixels 0..16 as floats ``(n, 64)``, labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data[:n].astype(np.float32) / 16.0, digits.target[:n].astype(np.int64)


def _csv(folder: Path) -> tuple[str, str]:
    x, y = _digits()
    with (folder / "digits.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*(f"p{i}" for i in range(64)), "digit"])
        writer.writerows([*row.tolist(), int(label)] for row, label in zip(x, y, strict=True))
    return "digits.csv", 'label = "digit"'


def _npz(folder: Path) -> tuple[str, str]:
    x, y = _digits()
    np.savez(folder / "digits.npz", pixels=x, target=y)
    return "digits.npz", 'x = "pixels"\ny = "target"'


def _images(folder: Path) -> tuple[str, str]:
    from PIL import Image

    x, y = _digits()
    root = folder / "pictures"
    for i, (row, label) in enumerate(zip(x, y, strict=True)):
        if label > 2:  # three classes are enough
            continue
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        pixels = (row.reshape(8, 8) * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(root / f"class{label}" / f"{i}.png")
    return "pictures", ""


def _hf(folder: Path) -> tuple[str, str]:
    datasets = pytest.importorskip("datasets")
    x, y = _digits()
    features = datasets.Features(
        {
            "pixels": datasets.Sequence(datasets.Value("float32"), length=64),
            "digit": datasets.ClassLabel(names=[str(k) for k in range(10)]),
        }
    )
    saved = datasets.Dataset.from_dict({"pixels": x.tolist(), "digit": y.tolist()}, features)
    saved.save_to_disk(str(folder / "saved"))
    return "saved", 'label = "digit"\nx = "pixels"'


FORMATS = {"csv": _csv, "npz": _npz, "images": _images, "hf": _hf}


def _project(folder: Path, fmt: str, factory: str = "mymodels:mlp") -> Path:
    """A user's folder: the data, ``mymodels.py`` and ``study.toml``; returns the study."""
    folder.mkdir(parents=True, exist_ok=True)
    path, extra = FORMATS[fmt](folder)
    if fmt == "images":
        factory = factory.replace(":mlp", ":convnet")
    (folder / "mymodels.py").write_text(MODELS)
    study = folder / "study.toml"
    study.write_text(
        STUDY.format(name=f"own-{fmt}", format=fmt, path=path, extra=extra, factory=factory)
    )
    return study


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory of a new user; ``mymodels`` is forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGLAB_TRUST_FACTORIES", raising=False)
    monkeypatch.delenv("REGLAB_FACTORY_PATH", raising=False)
    yield tmp_path
    sys.modules.pop("mymodels", None)


def _reported(run: Path, trials: int = 2) -> None:
    assert (run / "report.html").is_file()
    assert (run / "summary.md").is_file()
    finished = sorted(p.name for p in (run / "trials").iterdir())
    assert len(finished) == trials
    assert all((run / "trials" / key / "metrics.json").is_file() for key in finished)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_reglab_run_on_own_data_with_a_factory_from_the_working_directory(
    user_folder: Path, fmt: str, capsys
) -> None:
    _project(user_folder, fmt)
    code = main(
        ["run", "study.toml", "--out", "run", "--trust-factory", "mymodels", "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    _reported(user_folder / "run")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_run_study_on_own_data_with_a_trusted_factory(
    user_folder: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _project(user_folder, fmt)
    monkeypatch.setenv("REGLAB_TRUST_FACTORIES", "mymodels")
    records, run_dir = run_study(study, out=user_folder / "run")
    assert [r["label"] for r in records] == ["none", "L2"]
    assert all(0.0 <= r["metrics"]["test_acc"] <= 1.0 for r in records)
    # a factory's model has no modules named act*: activation statistics are not measured
    assert all("zero_frac" not in r["metrics"] for r in records)
    _reported(run_dir.path)


def test_reglab_run_finds_the_factory_beside_the_study_file(tmp_path: Path) -> None:
    """A subprocess started elsewhere: ``mymodels.py`` is beside the study, not on any path."""
    study = _project(tmp_path / "project", "csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REGLAB_FACTORY_PATH",)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglab",
            "run",
            str(study),
            "--out",
            "run",
            "--no-progress",
            "--trust-factory",
            "mymodels",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    _reported(elsewhere / "run")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_reglab_run_subprocess_in_the_users_folder(tmp_path: Path, fmt: str) -> None:
    _project(tmp_path, fmt)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglab",
            "run",
            "study.toml",
            "--out",
            "run",
            "--no-progress",
            "--trust-factory",
            "mymodels",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    _reported(tmp_path / "run")


# -- run_study from Python: data in memory, a callable model ---------------------------------
def _net(features: int, classes: int, image_shape=None, hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


TINY = """
name = "py"
seeds = [0]
[data]
validation = 0.2
[train]
epochs = 1
[[grid]]
name = "none"
[[grid]]
name = "L2"
rules."*".kernel = {{ class_name = "L2", config = {{ l2 = 1e-3 }} }}
"""


@pytest.mark.parametrize("form", ["pair", "dataset", "splits"])
def test_run_study_takes_tensors_a_dataset_or_splits_and_a_callable(
    tmp_path: Path, form: str
) -> None:
    x, y = (torch.from_numpy(a) for a in _digits())
    data = {
        "pair": (x, y),
        "dataset": torch.utils.data.TensorDataset(x, y),
        "splits": {"train": (x[:180].numpy(), y[:180].numpy()), "test": (x[180:], y[180:])},
    }[form]
    study = tmp_path / "py.toml"
    study.write_text(TINY.format())
    result = run_study(study, data=data, model=_net, out=tmp_path / "run")
    assert [r["label"] for r in result.records] == ["none", "L2"]
    assert result.report.is_file()
    assert (tmp_path / "run" / "data.npz").is_file()  # the data are part of the run's record
    assert (tmp_path / "run" / "data-test.npz").is_file() == (form == "splits")
    # reading the run later needs nothing from this process
    assert main(["report", str(tmp_path / "run")]) == 0


def test_run_study_with_a_parsed_study_and_a_built_in_dataset(tmp_path: Path) -> None:
    study = tmp_path / "py.toml"
    study.write_text(TINY.format().replace("[data]\n", '[data]\nname = "digits"\nsubset = 200\n'))
    parsed, _, _ = find_study(str(study))
    records, run_dir = run_study(parsed, model=_net, out=tmp_path / "run")
    assert len(records) == 2
    assert run_dir.path == tmp_path / "run"


def test_run_study_refuses_before_creating_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    x, y = _digits()
    with pytest.raises(
        StudyError,
        match=r"^default\.data\.y: labels must be one per row: 240 rows .* \(got 'the data given to run_study'\)$",
    ):
        run_study("default", data=(x, y[:10]), model=_net, out=out)
    with pytest.raises(InvalidParameterError, match="must be an \\(x, y\\) pair"):
        run_study("default", data=x, model=_net, out=out)
    with pytest.raises(InvalidParameterError, match="'train' and optionally 'test'"):
        run_study("default", data={"valid": (x, y)}, model=_net, out=out)
    with pytest.raises(InvalidParameterError, match="must accept the keyword arguments"):
        run_study("default", data=(x, y), model=lambda: nn.Linear(64, 10), out=out)
    with pytest.raises(InvalidParameterError, match="'device' parameter"):
        run_study("default", data=(x, y), model=_net, out=out, device="tpu")
    assert not out.exists()


# -- nothing before the checks ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("digits.csv", "missing.csv"), "study.data.path: no such file"),
        (('label = "digit"', 'label = "nope"'), "study.data.label: digits.csv has no column"),
        (("mymodels:mlp", "nomodels:mlp"), "model.factory: cannot import 'nomodels:mlp'"),
        (("mymodels:mlp", "mymodels:no_arguments"), "must accept the keyword arguments"),
        (("mymodels:mlp", "mymodels:absent"), "cannot import 'mymodels:absent'"),
        (("mymodels:mlp", "mymodels:not_a_module"), "returned a str; a factory must return"),
        (
            ('rules."*"', 'rules."fc*"'),
            "grid point 'L2': rules: Rule 'fc*' matches no module of Sequential",
        ),
    ],
)
def test_a_failed_start_leaves_no_run_directory(
    user_folder: Path, change: tuple[str, str], message: str, capsys
) -> None:
    study = _project(user_folder, "csv")
    study.write_text(study.read_text().replace(*change))
    code = main(
        [
            "run",
            "study.toml",
            "--out",
            "run",
            "--no-progress",
            "--trust-factory",
            "mymodels",
            "--trust-factory",
            "nomodels",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (user_folder / "run").exists()


def test_an_untrusted_factory_leaves_no_run_directory(user_folder: Path, capsys) -> None:
    _project(user_folder, "csv")
    assert main(["run", "study.toml", "--out", "run", "--no-progress"]) == 2
    assert "--trust-factory mymodels" in capsys.readouterr().err
    assert not (user_folder / "run").exists()
    assert "mymodels" not in sys.modules


def test_a_factory_that_returns_no_module_is_named(user_folder: Path) -> None:
    from reglab.lab import Trust

    _project(user_folder, "csv", factory="mymodels:not_a_module")
    parsed, _, _ = find_study("study.toml")
    with (
        Trust(("mymodels",)).active(),
        pytest.raises(InvalidParameterError, match="returned a str; a factory must return an nn"),
    ):
        run_trial(parsed.points[0].config, 0)


# -- [data] in the study file ----------------------------------------------------------------
def test_data_paths_are_relative_to_the_study_file(tmp_path: Path, monkeypatch) -> None:
    study = _project(tmp_path / "project", "npz")
    monkeypatch.chdir(tmp_path)
    parsed, document, _ = find_study(str(study))
    data = parsed.points[0].config.data
    assert document["data"]["path"] == str((tmp_path / "project" / "digits.npz").resolve())
    assert (data.features, data.dataset.classes, data.dataset.image) == (64, 10, None)
    assert data.title == "digits.npz"


def test_own_data_sizes_and_convnets_are_checked_against_the_data(tmp_path: Path) -> None:
    study = _project(tmp_path, "images")
    text = study.read_text()
    mlp = text.replace('kind = "factory"\nfactory = "mymodels:convnet"', "sizes = [60, 8, 3]")
    study.write_text(mlp)
    with pytest.raises(StudyError, match=r"model\.sizes: must start with the 64 input features"):
        find_study(str(study))
    study.write_text(mlp.replace("[60, 8, 3]", "[64, 8, 3]"))
    (point, _) = find_study(str(study))[0].points
    assert point.config.data.dataset.image == (1, 8, 8)
    cnn = text.replace(
        'kind = "factory"\nfactory = "mymodels:convnet"', 'kind = "cnn"\nchannels = [4]'
    )
    study.write_text(cnn)
    (point, _) = find_study(str(study))[0].points
    assert point.config.network()(torch.zeros(2, 64)).shape == (2, 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('name = "digits"', "data.name: give either name (a built-in dataset) or format"),
        ("inputs = 3", "data.inputs: applies to name = 'teacher' only"),
        ("shuffle = true", "data.shuffle: unknown key; allowed:"),
    ],
)
def test_own_data_table_refuses_other_keys(tmp_path: Path, extra: str, message: str) -> None:
    study = _project(tmp_path, "npz")
    study.write_text(study.read_text().replace("validation = 0.2", f"validation = 0.2\n{extra}"))
    with pytest.raises(StudyError, match=re.escape(message)):
        find_study(str(study))


# -- reglab data inspect ---------------------------------------------------------------------
def test_data_inspect_prints_what_the_lab_sees_and_writes_nothing(
    user_folder: Path, capsys
) -> None:
    _project(user_folder, "csv")
    before = sorted(p.name for p in user_folder.iterdir())
    assert main(["data", "inspect", "study.toml"]) == 0
    out = capsys.readouterr().out
    assert "rows      240: train 144, validation 36, test 60" in out
    assert "features  64" in out
    assert "classes   10" in out
    assert main(["data", "inspect", "digits.csv", "--set", "label=digit"]) == 0
    assert "train 180, test 60" in capsys.readouterr().out
    assert main(["data", "inspect", "digits.csv"]) == 2
    err = capsys.readouterr().err
    assert "data.label: digits.csv has no column 'label'" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in user_folder.iterdir()) == before
