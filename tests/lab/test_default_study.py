"""`reglab run` with no study: the embedded default study, small and fast, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reglab.cli import main


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    out = tmp_path_factory.mktemp("default")
    assert main(["run", "--epochs", "8", "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
    return {
        p.parent.name.removesuffix("__seed0"): json.loads(p.read_text())
        for p in Path(out).glob("trials/*/metrics.json")
    }


def test_every_config_ran_with_sane_values(default_run) -> None:
    assert sorted(default_run) == sorted(
        [
            "none",
            "L2",
            "L1",
            "L1L2",
            "act-L1_l1=0.0001",
            "act-L1_l1=0.001",
            "act-L1_l1=0.01",
            "max-norm",
        ]
    )
    for name, m in default_run.items():
        assert 0.85 < m["test_acc"] <= 1.0, name  # digits is easy: every config learns
        assert m["gap"] == pytest.approx(m["train_acc"] - m["test_acc"])
        assert 0.0 <= m["zero_frac"] <= 1.0
        assert m["weight_norm"] > 0


def test_l1_activity_rows_are_sparser_than_unregularized(default_run) -> None:
    zeros = [
        default_run[k]["zero_frac"]
        for k in ("none", "act-L1_l1=0.0001", "act-L1_l1=0.001", "act-L1_l1=0.01")
    ]
    assert zeros == sorted(zeros), zeros  # monotone in the coefficient
    assert zeros[2] > zeros[0] + 0.05
    assert zeros[3] > zeros[0] + 0.3


def test_weight_penalties_shrink_the_weights(default_run) -> None:
    for name in ("L2", "L1", "L1L2"):
        assert default_run[name]["weight_norm"] < 0.9 * default_run["none"]["weight_norm"], name
