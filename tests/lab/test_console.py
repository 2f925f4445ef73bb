"""The console (issue 27, item 5): tables that never cut a number, one plain line per finished
trial without a terminal, and a one-line-per-study listing that parses no study."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from reglab.cli import main
from reglab.cli.lines import key_metrics, plain_output, trial_line
from reglab.cli.studies import COLUMNS, configurations, study_line
from reglab.cli.tables import fit_columns, results_table
from reglab.lab import builtin_studies, find_study
from reglab.lab.metrics import OBJECTIVES, format_value, metric
from tests.lab.conftest import write_tiny

ROW_METRICS = {
    "train_acc": (0.99, 0.01),
    "val_acc": (0.9712, 0.0123),
    "test_acc": (0.7991, 0.1234),
    "gap": (0.1, 0.01),
    "test_ece": (0.0312, 0.0),
    "test_ece_ts": (0.02, 0.0),
    "zero_frac": (0.5, 0.1),
    "weight_norm": (12345.6, 1.0),
    "seconds": (15.61, 0.0),
}
SUMMARY = [
    {"label": label, "notes": notes, "metrics": ROW_METRICS}
    for label, notes in (
        ("none", ""),
        ("ExpAbs coefficient=0.0001", ""),
        ("L1L2 l1=1e-05 l2=0.1 with a long name", "diverged (seed 1): loss is nan at step 12"),
    )
]


def _render(width: int, first: tuple[str, ...] = ()) -> str:
    out = io.StringIO()
    Console(file=out, width=width).print(results_table(SUMMARY, "t", width, first=first))
    return out.getvalue()


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_the_table_never_cuts_a_number(width: int) -> None:
    text = _render(width, first=("val_acc", "test_acc"))
    assert "…" not in text
    shown, left_out = fit_columns(SUMMARY, width - 15, first=("val_acc", "test_acc"))
    for m in shown:
        mean, std = ROW_METRICS[m.key]
        cell = format_value(m, mean, std if m.spread else None).replace(" ± ", "±")
        assert cell in text, (m.key, cell, text)
    assert all(len(line) <= width for line in text.splitlines())
    if left_out:  # named, not silently dropped
        assert "not shown here (too wide)" in text


def test_the_objective_and_its_test_metric_get_room_first() -> None:
    shown, _ = fit_columns(SUMMARY, 40, first=("val_acc", "test_acc"))
    assert [m.key for m in shown] == ["val_acc", "test_acc"]
    wide, left_out = fit_columns(SUMMARY, 200)
    assert not left_out
    assert [m.key for m in wide][:3] == ["train_acc", "val_acc", "test_acc"]


def test_trial_line_says_the_key_metrics_and_the_stack() -> None:
    acc = OBJECTIVES["val_acc"]
    metrics = {"train_acc": 1.0, "val_acc": 0.9712, "test_acc": 0.96, "gap": 0.04, "seconds": 2.0}
    assert [m.key for m in key_metrics(metrics, acc)] == ["val_acc", "test_acc", "train_acc", "gap"]
    assert (
        trial_line(3, 18, "L2 l2=0.001", 1, metrics, acc, stack=6, seconds=9.84)
        == "[3/18] L2 l2=0.001 seed 1: val % 97.1  test % 96.0  train % 100.0  gap pts 4.0  "
        "(stack of 6: 9.8 s for all)"
    )
    assert trial_line(1, 2, "a", 0, None, acc, diverged="loss is nan at step 3") == (
        "[1/2] a seed 0: diverged (loss is nan at step 3)"
    )
    line = trial_line(1, 2, "a", 0, {"val_acc": None}, acc, seconds=1.0)
    assert line == f"[1/2] a seed 0: val % {format_value(metric('val_acc'), math.nan)}  (1.0 s)"


def test_plain_output_means_not_a_terminal() -> None:
    assert plain_output(io.StringIO())


def test_without_a_terminal_every_finished_trial_prints_one_line(tmp_path: Path) -> None:
    study = write_tiny(tmp_path, epochs=2)
    proc = subprocess.run(
        [sys.executable, "-m", "reglab", "run", str(study), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(
        r"^\[(\d)/6\] (.+) seed (\d): val % \d+\.\d  test % \d+\.\d  .*$", proc.stdout, re.M
    )
    assert sorted(int(n) for n, _, _ in lines) == [1, 2, 3, 4, 5, 6], proc.stdout
    assert {(label, int(seed)) for _, label, seed in lines} == {
        (label, seed) for label in ("none", "L2 l2=0.0001", "L2 l2=0.01") for seed in (0, 1)
    }
    # the lines come as trials finish: before the results table, which is cut nowhere
    assert proc.stdout.index("[6/6]") < proc.stdout.index("tiny (mean±std over seeds)")
    assert "…" not in proc.stdout
    assert re.search(r"^Chosen on val_acc \(mean over seeds\): ", proc.stdout, re.M)


# -- reglab studies --------------------------------------------------------------------------
def test_studies_counts_what_the_parser_expands() -> None:
    for name, text in builtin_studies().items():
        line = study_line(text)
        study, raw, _ = find_study(name)
        assert line.seeds == len(study.seeds), name
        assert line.search == study.search.method, name
        if study.search.method != "grid":
            # a search asks its configurations as it goes: the listing says the method
            assert line.size == f"{study.search.method} x{len(study.seeds)}", name
            continue
        assert line.configurations == len(study.points), name
        assert configurations(raw) == len(study.points), name


def test_studies_prints_one_line_per_study_and_parses_none(tmp_path: Path) -> None:
    code = (
        "import sys; from reglab.cli.main import main; code = main(['studies']); "
        "sys.stdout.flush(); print('KINDS', sorted(m for m in sys.modules "
        "if m.startswith('reglab.lab.kinds.'))); sys.exit(code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].split() == " ".join(COLUMNS).split()  # the header's one definition
    names = list(builtin_studies())
    rows = out[1 : 1 + len(names)]
    assert [r.split()[0] for r in rows] == names
    default = next(r for r in rows if r.startswith("default "))
    assert default.split()[1:4] == ["mlp", "digits", "8x3=24"]
    assert re.search(r"8x3=24 +~\d+(\.\d)? (s|min|h)  bundled$", default), default
    assert "none (synthetic)" in next(r for r in rows if r.startswith("norm-constraints "))
    # no study was parsed: the registry never loaded the kinds that build convnets
    assert "reglab.lab.kinds.convnets" not in out[-1]


def test_studies_long_adds_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["studies", "--long"]) == 0
    out = capsys.readouterr().out
    assert "Krogh & Hertz" in out
    words = " ".join(out.split())  # descriptions wrap
    assert "22 held out for validation" in words  # norm-constraints' description
    # what the estimate counted: default's 24 trials of 30 epochs of 17 steps
    assert "est. time counts: 24 trials, 12,240 optimizer steps," in out
