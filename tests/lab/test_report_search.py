"""The report of a searched run: coarse-to-fine's stages figure (objective vs coefficient,
every stage, seed spread, the chosen value) and the pruned validation curves with what
pruning saved — from real (tiny) searches run through ``reglab run``, and the pure numbers
against hand-built records.

The tiny task is :mod:`tests.lab.search.test_run_search`'s: 300 digits, a 64-16-10 MLP, an
L2 coefficient in [1e-5, 10] (a coefficient >= 1 keeps the network at chance).
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
from pathlib import Path

import pytest

from reglab.cli.main import main
from reglab.lab import RunDir
from reglab.lab.metrics import metric
from reglab.lab.report.figures import axis_labels
from reglab.lab.report.search_views import (
    pruning_curves,
    pruning_figure,
    pruning_line,
    search_views,
    stage_series,
    stages_figure,
)
from reglab.lab.search.axes import find_axes
from reglab.lab.settings.studyfile import load_study
from reglab.lab.sweep.search import SearchSweep

from .conftest import write_tiny
from .search.test_run_search import AXIS, _write


def _figure(page: str, name: str) -> tuple[list[dict[str, str]], str]:
    """The ``data-axes`` panels and the inner markup of ``<figure id="fig-NAME">``."""
    match = re.search(
        rf'<figure id="fig-{name}" data-axes="([^"]*)">(.*?)</figure>', page, flags=re.S
    )
    assert match, f"no figure fig-{name} in the report"
    return json.loads(html.unescape(match.group(1))), match.group(2)


def _records(out: Path) -> tuple[object, SearchSweep, list[dict]]:
    run_dir = RunDir(out)
    study = run_dir.study()
    sweep = SearchSweep.open(study, run_dir.storage_url, run_dir.optuna_study)
    return study, sweep, sweep.results()


@pytest.fixture(scope="module")
def coarse_to_fine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("c2f")
    out = folder / "run"
    path = _write(folder, 'method = "coarse-to-fine"\npoints = 3', seeds="[0, 1]", epochs=2)
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The run directory and what ``reglab run`` printed."""
    folder = tmp_path_factory.mktemp("pruned")
    out = folder / "run"
    path = _write(folder, 'method = "random"\ntrials = 8\npruner = "asha"\nseed = 0', epochs=4)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    return out, printed.getvalue()


# -- coarse-to-fine ---------------------------------------------------------------------------


def test_stages_figure_draws_both_stages_with_labelled_axes_and_the_chosen_value(
    coarse_to_fine: Path,
) -> None:
    page = (coarse_to_fine / "report.html").read_text(encoding="utf-8")
    axes, svg = _figure(page, "search_stages")
    assert axes == [
        {
            "title": "L2: validation accuracy vs l2, by stage",
            "x": "l2 (log axis)",
            "y": "validation accuracy (%)",
        }
    ]
    assert "stage 1 (7 points)" in svg  # the legend: every stage-1 decade, 1e-5 ... 10
    assert re.search(r"stage 2 \(\d points?\)", svg)
    # hover values: a point of each stage with its seed spread, and the chosen one
    assert re.search(r"<title>stage 1: l2=1e-05: validation accuracy [\d.]+ ± [\d.]+ \(%\)", svg)
    assert re.search(r"<title>stage 2: l2=[\d.e-]+: validation accuracy [\d.]+ ± [\d.]+", svg)
    assert "<title>chosen: l2=" in svg
    # the evidence, as `reglab run` printed it: chosen vs runner-up
    assert re.search(
        r"Evidence \(chosen vs runner-up, mean ± std over seeds\): l2 = [\de.-]+: "
        r"val_acc [\d.]+ ± [\d.]+ vs [\d.]+ ± [\d.]+ at [\de.-]+\.",
        html.unescape(page),
    )
    md = (coarse_to_fine / "summary.md").read_text(encoding="utf-8")
    assert "(search_stages.png)" in md
    assert (coarse_to_fine / "search_stages.png").stat().st_size > 1000
    assert "fig-search_pruning" not in page  # coarse-to-fine prunes nothing


def test_stage_series_holds_each_stage_and_marks_the_choice_the_run_printed(
    coarse_to_fine: Path,
) -> None:
    study, sweep, records = _records(coarse_to_fine)
    series = stage_series(records, study.searched.space, "val_acc")
    assert series is not None
    (panel,) = series["axes"]
    assert panel["param"] == AXIS
    assert set(panel["stages"]) == {1, 2}
    assert panel["stages"][1]["x"] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert all(n == 2 for s in panel["stages"].values() for n in s["n"])  # both seeds
    # the mean and sample std of one point, by hand from its two seeds
    by_x = [r for r in records if r["params"][AXIS] == 1e-3]
    values = [r["metrics"]["val_acc"] for r in by_x]
    i = panel["stages"][1]["x"].index(1e-3)
    assert panel["stages"][1]["mean"][i] == pytest.approx(sum(values) / 2)
    assert panel["stages"][1]["std"][i] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    best = sweep.best()
    assert best is not None
    assert series["chosen"] == best[0]  # the value `reglab run` printed and wrote to best.toml
    assert series["chosen_stats"][0] == pytest.approx(sum(best[1]) / len(best[1]))


def test_stage_series_skips_pruned_and_diverged_trials_and_minimises_a_loss() -> None:
    space = find_axes({"l2": {"log": [1e-4, 1e-1]}})
    records = [
        {"stage": 1, "params": {"l2": 1e-3}, "metrics": {"val_loss": 0.5}},
        {"stage": 1, "params": {"l2": 1e-2}, "metrics": {"val_loss": 0.3}},
        {"stage": 2, "params": {"l2": 3e-3}, "metrics": {"val_loss": 0.1}, "pruned": True},
        {"stage": 2, "params": {"l2": 5e-3}, "metrics": {"val_loss": 0.1}, "diverged": "nan"},
    ]
    series = stage_series(records, space, "val_loss", maximize=False)
    assert series is not None
    assert series["chosen"] == {"l2": 1e-2}
    assert list(series["axes"][0]["stages"]) == [1]
    assert stage_series(records[:1], space, "val_loss") is None  # one point: nothing to draw


# -- pruning ----------------------------------------------------------------------------------


def test_pruned_curves_figure_and_time_saved_line(pruned: tuple[Path, str]) -> None:
    pruned, _ = pruned
    _, _, records = _records(pruned)
    done = [r for r in records if not r["diverged"]]
    cut = [r for r in done if r["pruned"]]
    assert cut, "ASHA pruned nothing: the test cannot show anything"
    saved = sum(4 - len(r["history"]) for r in cut)
    line = f"Pruned {len(cut)} of {len(done)} trials, saving {saved} of {4 * len(done)} epochs (≈"
    page = (pruned / "report.html").read_text(encoding="utf-8")
    timing = re.search(r'<p id="time">(.*?)</p>', page, flags=re.S)
    assert timing
    assert line in html.unescape(timing.group(1))
    assert line in (pruned / "summary.md").read_text(encoding="utf-8")
    axes, svg = _figure(page, "search_pruning")
    assert axes[0]["x"] == "epoch"
    assert axes[0]["y"] == "validation accuracy (%)"
    assert f"pruned ({len(cut)}), × where stopped" in svg
    for r in cut:  # each pruned curve ends where it was stopped
        assert f"(seed 0): pruned at epoch {len(r['history'])}, last validation" in svg
    assert (pruned / "search_pruning.png").is_file()
    assert "fig-search_stages" not in page  # a sampled search has no stages


def test_pruning_numbers_from_hand_built_records() -> None:
    def rec(epochs: int, pruned: bool, **more) -> dict:
        history = [{"val_acc": 0.5 + 0.1 * e, "epoch_time": 2.0} for e in range(epochs)]
        return {"label": "a", "seed": 0, "history": history, "pruned": pruned, **more}

    records = [
        rec(5, False),
        rec(1, True),
        rec(3, True),
        rec(2, False, diverged="loss is nan"),  # not counted
        {"label": "b", "seed": 0, "history": [{"val_acc": 0.5}], "pruned": True,
         "metrics": {"seconds": 3.0}},  # no epoch_time: seconds / epochs
    ]  # fmt: skip
    p = pruning_curves(records, "val_acc", epochs=5)
    assert p is not None
    assert (p["trials"], p["pruned"], p["epochs_trained"], p["epochs_full"]) == (4, 3, 10, 20)
    assert p["epochs_saved"] == 4 + 2 + 4
    assert p["seconds_saved"] == pytest.approx(4 * 2.0 + 2 * 2.0 + 4 * 3.0)
    assert pruning_line(p) == (
        "Pruned 3 of 4 trials, saving 10 of 20 epochs (≈ 24.0 s, at each pruned trial's "
        "measured time per epoch)."
    )
    assert [len(c["values"]) for c in p["curves"]] == [5, 1, 3, 1]
    fig = pruning_figure(p, metric("val_acc"), epochs=5)
    assert all(a["x"] == "epoch" and a["y"] for a in axis_labels(fig))
    assert pruning_curves([], "val_acc", epochs=5) is None


def test_a_grid_has_no_search_views(tmp_path: Path) -> None:
    views = search_views(load_study(write_tiny(tmp_path)), [])
    assert views.figures == []
    assert views.lines == []


def test_two_log_axes_get_a_panel_each_holding_the_chosen_points_neighbours() -> None:
    space = find_axes({"l2": {"log": [1e-4, 1e-1]}, "lr": {"log": [1e-3, 1e-1]}})
    grid = [(1, 1e-3, 1e-2, 0.90), (1, 1e-2, 1e-2, 0.80), (1, 1e-3, 1e-1, 0.70)]
    grid += [(1, 1e-2, 1e-1, 0.95), (2, 3e-3, 1e-2, 0.92)]
    records = [
        {"stage": s, "params": {"l2": a, "lr": b}, "metrics": {"val_acc": v}} for s, a, b, v in grid
    ]
    series = stage_series(records, space, "val_acc")
    assert series is not None
    assert series["chosen"] == {"l2": 1e-2, "lr": 1e-1}
    l2, lr = series["axes"]
    assert l2["param"] == "l2"
    assert l2["stages"] == {1: {"x": [1e-3, 1e-2], "mean": [0.7, 0.95], "std": [0, 0], "n": [1, 1]}}
    assert lr["stages"][1]["x"] == [1e-2, 1e-1]  # the points with l2 = 1e-2
    fig = stages_figure(series, metric("val_acc"), "L2")
    assert [a["x"] for a in axis_labels(fig)] == ["l2 (log axis)", "lr (log axis)"]
    assert all(a["y"] == "validation accuracy (%)" for a in axis_labels(fig))


def test_a_pruned_trial_is_counted_as_pruned_and_never_the_choice(
    pruned: tuple[Path, str],
) -> None:
    out, printed = pruned
    _, sweep, records = _records(out)
    cut = [r for r in records if r["pruned"]]
    complete = [r for r in records if not r["pruned"] and not r["diverged"]]
    assert cut
    assert len(complete) > 1, "fewer than two trials ran to the end: nothing to choose"
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert f"{len(complete)} of 8 trials complete, {len(cut)} pruned" in md
    best = sweep.best()  # the complete trial with the best validation metric
    assert best is not None
    chosen = next(r for r in complete if r["params"] == best[0])
    assert f"Chosen on val_acc (mean over seeds): {chosen['label']} with" in md
    assert "pruned at epoch" not in md.split("Chosen on val_acc")[1].split("with")[0]
    # the console says the same
    line = " ".join(printed.split("Chosen on val_acc")[1].split("with")[0].split())
    assert line == f"(mean over seeds): {chosen['label']}"
