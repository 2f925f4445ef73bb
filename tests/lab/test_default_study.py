"""The first `reglab run`: end to end on digits, small and fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reglab.cli import main
from reglab.lab import DEFAULT_GRID, run_default_study, summarize

SMALL = [g for g in DEFAULT_GRID if g[0] in ("none", "L2 1e-3", "act-L1 1e-3", "act-L1 1e-2")]


@pytest.fixture(scope="module")
def rows() -> dict:
    results = run_default_study(epochs=8, seeds=(0, 1), grid=SMALL)
    return {row.config: row.metrics for row in summarize(results)}


def test_table_values_are_sane(rows: dict) -> None:
    for config, m in rows.items():
        assert 0.85 < m["test_acc"][0] <= 1.0, config  # digits is easy: every config learns
        assert 0.0 <= m["zero_frac"][0] <= 1.0
        assert m["gap"][0] == pytest.approx(m["train_acc"][0] - m["test_acc"][0])
        assert m["weight_norm"][0] > 0
        assert m["seconds"][0] > 0


def test_l1_activity_rows_are_sparser_than_unregularized(rows: dict) -> None:
    none, mid, strong = (rows[c]["zero_frac"][0] for c in ("none", "act-L1 1e-3", "act-L1 1e-2"))
    assert none + 0.05 < mid < strong - 0.10, (none, mid, strong)


def test_l2_kernel_shrinks_the_weights(rows: dict) -> None:
    assert rows["L2 1e-3"]["weight_norm"][0] < 0.9 * rows["none"]["weight_norm"][0]


def test_a_trial_is_deterministic_on_cpu() -> None:
    grid = [("act-L1 1e-3", dict(SMALL)["act-L1 1e-3"])]
    a = run_default_study(epochs=2, seeds=(5,), grid=grid)["act-L1 1e-3"][0]
    b = run_default_study(epochs=2, seeds=(5,), grid=grid)["act-L1 1e-3"][0]
    assert (a.train_accuracy, a.test_accuracy, a.zero_fraction, a.weight_norm) == (
        b.train_accuracy,
        b.test_accuracy,
        b.zero_fraction,
        b.weight_norm,
    )


def test_console_script_end_to_end() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglab",
            "run",
            "--epochs",
            "2",
            "--seeds",
            "1",
            "--only",
            "none",
            "--only",
            "act-L1 1e-2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "act-L1 1e-2" in proc.stdout
    assert "none" in proc.stdout
    assert "2 trials in" in proc.stdout


def test_cli_user_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--only", "dropout"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reglab run: error: The '--only' parameter of reglab run must be one of")
    assert "Got 'dropout' instead." in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--epochs", "0"])
    assert exc.value.code == 2
    assert main([]) == 2
