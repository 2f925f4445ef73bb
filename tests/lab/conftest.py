"""A tiny study for lab tests: digits subset, 3 grid points x 2 seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """
name = "{name}"
description = "A tiny test study."
seeds = [0, 1]

[data]
name = "digits"
subset = 300

[model]
sizes = [64, 32, 10]

[train]
epochs = {epochs}
batch_size = 64

[[grid]]
name = "none"

[[grid]]
name = "L2"
rules."fc*".kernel = {{ class_name = "L2", config = {{ l2 = {{ log = [1e-4, 1e-2], num = 2 }} }} }}
"""


def write_tiny(folder: Path, name: str = "tiny", epochs: int = 3) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(name=name, epochs=epochs))
    return path


def write_one_epoch(folder: Path, seeds: str = "[0]") -> Path:
    """A study of one grid point, 100 digits, one epoch: the quickest complete run."""
    path = folder / "t.toml"
    path.write_text(
        f'name = "t"\nseeds = {seeds}\n[data]\nsubset = 100\n[model]\nsizes = [64, 8, 10]\n'
        '[train]\nepochs = 1\n[[grid]]\nname = "a"\n'
    )
    return path


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    return write_tiny(tmp_path)
