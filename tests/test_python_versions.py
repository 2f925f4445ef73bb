"""The requires-python claim is true: the sources need nothing newer than its floor (vermin),
Python 3.10 itself compiles them when this machine has it, and tomllib's backport is declared."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FLOOR = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])


def test_requires_python_is_a_plain_floor_matching_ruff() -> None:
    assert FLOOR is not None
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{FLOOR[1]}{FLOOR[2]}"


def test_sources_need_nothing_newer_than_the_floor() -> None:
    target = f"{FLOOR[1]}.{FLOOR[2]}"
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or "vermin"
    done = subprocess.run(
        [
            vermin,
            "--no-tips",
            "--violations",
            "--eval-annotations",
            f"-t={target}-",
            str(ROOT / "src"),
        ],
        capture_output=True,
        text=True,
    )
    assert "Target versions not met" not in done.stdout, done.stdout
    assert f"Minimum required versions: {target}" in done.stdout, done.stdout


def test_tomli_is_declared_where_tomllib_is_missing() -> None:
    lab = PYPROJECT["project"]["optional-dependencies"]["lab"]
    assert any(d.startswith("tomli") and "python_version < '3.11'" in d for d in lab)


def _python(version: str) -> str | None:
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True)
        candidates = sorted(Path(done.stdout.strip(), "versions").glob(f"{version}.*/bin/python"))
        if candidates:
            return str(candidates[-1])
    return None


def test_the_floor_interpreter_compiles_every_source() -> None:
    version = f"{FLOOR[1]}.{FLOOR[2]}"
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (vermin above still checks the syntax)")
    check = (
        "import pathlib, sys\n"
        "for root in sys.argv[1:]:\n"
        "    for path in sorted(pathlib.Path(root).rglob('*.py')):\n"
        "        compile(path.read_text(encoding='utf-8'), str(path), 'exec')\n"
    )
    done = subprocess.run(
        [python, "-c", check, str(ROOT / "src"), str(ROOT / "tests")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
