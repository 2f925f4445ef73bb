"""The commands that only read (``reglab --help``, ``reglab studies``, ``reglab show``) and the
default study's data import none of the heavy optional libraries: their cost is a fixed cost
of every ``reglab`` command (``benchmarks/bench_fixed_costs.py`` measures it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Imported only where they are used: the report (matplotlib, PIL), own data sources (pandas,
#: pyarrow, Hugging Face), augmentation (kornia, torchvision), scikit-learn's splits, storage
#: migrations (alembic: Optuna imports it when it creates a storage).
HEAVY = (
    "sklearn",
    "scipy",
    "matplotlib",
    "PIL",
    "pandas",
    "pyarrow",
    "transformers",
    "datasets",
    "kornia",
    "torchvision",
    "alembic",
)


def _imported(code: str) -> list[str]:
    probe = (
        f"{code}; import json, sys; sys.stdout.flush(); print(json.dumps(sorted(m for m in "
        f"sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["studies"], ["show", "default"]])
def test_light_commands_import_no_heavy_library(argv: list[str]) -> None:
    code = (
        f"from reglab.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    )
    assert _imported(f"exec({code!r})") == []


def test_the_default_studys_data_imports_no_heavy_library() -> None:
    code = (
        "from reglab.lab import find_study, load_data; "
        "study = find_study('default')[0]; load_data(study.trials[0].point.config.data)"
    )
    assert _imported(code) == []
