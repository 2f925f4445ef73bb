"""The core package alone (torch, numpy, platformdirs) in a fresh venv: `import reglab` and
every library module work, their examples run, and features needing an extra name it."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.skipif(os.environ.get("REGLAB_SKIP_CORE_INSTALL") == "1", reason="asked to skip")
def test_core_alone_in_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "core"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    torch_version = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__.split('+')[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    steps = [
        [*pip, f"torch=={torch_version}"],  # the CPU build (CI installs it from local disk)
        [*pip, str(ROOT)],  # reglab with its core dependencies only
    ]
    for step in steps:
        done = _run(step)
        assert done.returncode == 0, done.stdout + done.stderr
    done = _run([python, str(ROOT / "tests" / "core" / "examples.py")], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fit with the core alone: ok" in done.stdout
    done = _run([str(env_dir / "bin" / "reglab"), "run"])  # the CLI is the lab's
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "reglab: reglab's command line needs rich: pip install 'reglab[lab]'"
    )


def test_attach_does_not_import_torch_distributed_tensor() -> None:
    """``torch.distributed.tensor`` costs ~0.4 s to import (it pulls in sympy); reglab looks
    for DTensors only once something else has loaded it."""
    code = (
        "import sys, torch, reglab\n"
        "reglab.attach(torch.nn.Linear(2, 2), {'': {'kernel': 'l2'}}).penalty()\n"
        "assert 'torch.distributed.tensor' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
