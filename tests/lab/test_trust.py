"""Trusted code only: a study file or a run directory never makes reglab import or call code
unless the person running it trusts the factory's module (``--trust-factory`` or
``REGLAB_TRUST_FACTORIES``); ``reglab show`` and ``reglab report`` never import user code.

The "user code" here is a real module written to a temporary folder on ``sys.path`` that
leaves a marker file when it is imported and another when its factory is called."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.lab import Trust, UntrustedCode
from tests.lab.conftest import write_one_epoch

MODULE = """
from pathlib import Path
from torch import nn

HERE = Path(__file__).parent
(HERE / "imported").touch()


def make(features, classes, image_shape=None, hidden: int = 8):
    (HERE / "called").touch()
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))
"""

STUDY = """
name = "{name}"
seeds = [0]
[data]
subset = 100
[model]
kind = "factory"
factory = "{factory}"
options = {{ {options} }}
[train]
epochs = 1
[[grid]]
name = "a"
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module ``reglab_user_models`` on sys.path (here and in subprocesses); returns the
    folder where its markers appear."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "reglab_user_models.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.delenv("REGLAB_TRUST_FACTORIES", raising=False)
    yield folder
    sys.modules.pop("reglab_user_models", None)


def _study(tmp_path: Path, factory: str, options: str = "", name: str = "f") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(name=name, factory=factory, options=options))
    return path


def _run(*args: str) -> int:
    return main(["run", *args, "--no-progress"])


def test_a_study_file_cannot_run_a_shell_command(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PWNED"
    study = _study(tmp_path, "os:system", f'command = "touch {marker}"')
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(
        "reglab run: error: f: grid point 'a': the model factory 'os:system' is code, and "
        "reglab runs code from a study only when you trust it: add --trust-factory os "
        "(or set REGLAB_TRUST_FACTORIES=os)"
    ), err
    assert not marker.exists()
    assert not out.exists(), "a refused study must leave no run directory"


def test_an_untrusted_factory_is_neither_imported_nor_called(
    tmp_path: Path, user_module: Path, capsys
) -> None:
    study = _study(tmp_path, "reglab_user_models:make")
    assert _run(str(study), "--out", str(tmp_path / "run")) == 2
    assert "--trust-factory reglab_user_models" in capsys.readouterr().err
    assert not (user_module / "imported").exists()
    # Trusting another module (even one whose name is a prefix) does not trust this one.
    assert _run(str(study), "--out", str(tmp_path / "run"), "--trust-factory", "reglab_user") == 2
    assert not (user_module / "imported").exists()


def test_a_trusted_factory_runs(tmp_path: Path, user_module: Path, capsys) -> None:
    study = _study(tmp_path, "reglab_user_models:make", "hidden = 4")
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out), "--trust-factory", "reglab_user_models") == 0
    assert (user_module / "called").exists()
    assert "1/1 trials complete" in capsys.readouterr().out


def test_the_environment_variable_trusts_too(
    tmp_path: Path, user_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGLAB_TRUST_FACTORIES", "numpy, reglab_user_models")
    study = _study(tmp_path, "reglab_user_models:make")
    assert _run(str(study), "--out", str(tmp_path / "run")) == 0
    assert (user_module / "called").exists()


def test_resume_rechecks_a_run_directory_that_was_edited(tmp_path: Path, capsys) -> None:
    """The study recorded in a run directory is data too: one edited to name a factory is
    refused on --resume, before anything runs."""
    study = write_one_epoch(tmp_path)
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out)) == 0
    marker = tmp_path / "PWNED"
    recorded = json.loads((out / "study.json").read_text())
    recorded["model"] = {
        "kind": "factory",
        "factory": "os:system",
        "options": {"command": f"touch {marker}"},
    }
    (out / "study.json").write_text(json.dumps(recorded))
    capsys.readouterr()
    assert _run("--resume", str(out)) == 2
    assert "the model factory 'os:system' is code" in capsys.readouterr().err
    assert not marker.exists()


def test_show_and_report_never_import_user_code(tmp_path: Path, user_module: Path, capsys) -> None:
    study = _study(tmp_path, "reglab_user_models:make")
    out = tmp_path / "run"
    assert _run(str(study), "--out", str(out), "--trust-factory", "reglab_user_models") == 0
    for marker in ("imported", "called"):
        (user_module / marker).unlink()
    sys.modules.pop("reglab_user_models", None)
    assert main(["show", str(study)]) == 0
    assert main(["report", str(out)]) == 0
    assert "1/1 trials" in capsys.readouterr().out
    assert not (user_module / "imported").exists()
    assert "reglab_user_models" not in sys.modules


def test_trust_parses_module_names() -> None:
    trust = Trust.of(["pkg"], environ={"REGLAB_TRUST_FACTORIES": "other.sub, "})
    assert trust.modules == ("pkg", "other.sub")
    assert trust.allows("pkg:f")
    assert trust.allows("pkg.models:f")
    assert not trust.allows("pkgx:f")
    assert not trust.allows("other:f")
    with pytest.raises(UntrustedCode, match=r"^here: the model factory 'os:system' is code"):
        trust.require("os:system", "here")
    with pytest.raises(ValueError, match=r"--trust-factory / REGLAB_TRUST_FACTORIES: 'a b' is"):
        Trust.of(["a b"], environ={})
