"""The report's first screen, glossary and figures: pure functions against hand-computed
numbers, and the HTML structure of a real (tiny) run's report."""

from __future__ import annotations

import json
import math
import statistics
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from reglab.cli import main
from reglab.lab.metrics import DESCRIPTIONS, METRICS, metric
from reglab.lab.report.comparison import (
    Delta,
    compare,
    find_baseline,
    paired_delta,
    verdict,
)
from reglab.lab.report.describe import describe_point, format_number
from reglab.lab.report.figures import (
    axis_labels,
    learning_curves_figure,
    png,
    results_figure,
    svg,
)
from reglab.lab.report.summaries import summarize, table_rows
from reglab.lab.report.timing import training_time
from reglab.lab.settings.studyfile import StudyError, parse_study

from .conftest import write_tiny

# -- settings in words ---------------------------------------------------------------------


def test_settings_in_words_name_rules_techniques_and_changed_values() -> None:
    base = {"model": {"sizes": [64, 32, 10]}, "train": {"lr": 1e-3, "epochs": 5}}
    raw = {
        "model": {"sizes": [64, 32, 10], "dropout": 0.5},
        "train": {"lr": 1e-3, "epochs": 5},
        "rules": {
            "fc*": {
                "kernel": {"class_name": "L2", "config": {"l2": 1e-3}},
                "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 3.0}},
            },
            "act*": {"activity": "l1"},
        },
        "label_smoothing": {"eps": 0.1},
        "input_noise": 0.2,
        "weight_noise": 0.0,
    }
    assert describe_point(raw, base) == (
        "L2(l2=1e-3) on fc*, MaxNorm(max_value=3) on fc* (constraint), "
        "l1 on act* outputs (activity), label_smoothing(eps=0.1), input_noise=0.2, "
        "model.dropout=0.5"
    )
    assert describe_point({"model": base["model"], "train": base["train"]}, base) == (
        "no regularization"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-3, "1e-3"), (3e-4, "3e-4"), (1.5e-5, "1.5e-5"), (0.1, "0.1"), (2, "2"), (0.0, "0")],
)
def test_numbers_read_as_in_a_study_file(value: float, text: str) -> None:
    assert format_number(value) == text


# -- paired changes and verdicts -------------------------------------------------------------


def test_paired_delta_is_the_mean_and_sample_std_of_per_seed_differences() -> None:
    base = {0: 0.90, 1: 0.95, 2: 0.85, 3: None}
    other = {0: 0.92, 1: 0.96, 2: 0.88, 3: 0.99, 4: 0.5}  # seeds 3, 4 pair with nothing
    d = paired_delta("test_acc", base, other)
    diffs = np.array([0.92, 0.96, 0.88]) - np.array([0.90, 0.95, 0.85])
    assert d is not None
    assert d.n == 3
    assert d.mean == pytest.approx(diffs.mean())
    assert d.std == pytest.approx(diffs.std(ddof=1))
    assert d.baseline == pytest.approx(0.9)
    assert d.value == pytest.approx(statistics.fmean([0.92, 0.96, 0.88]))
    # Pairing removes the seed-to-seed spread both share: a clear change, although the two
    # means lie within each other's std.
    assert d.clear
    assert paired_delta("test_acc", {0: 0.9}, {1: 0.9}) is None


def test_a_change_is_clear_beyond_two_standard_errors_of_at_least_two_seeds() -> None:
    assert not Delta("test_acc", 0.9, 0.95, 0.05, math.nan, 1).clear
    assert Delta("test_acc", 0.9, 0.91, 0.01, 0.0, 2).clear
    assert Delta("test_acc", 0.9, 0.91, 0.01, 0.01, 5).clear  # 0.01 > 2 * 0.01 / sqrt(5)
    assert not Delta("test_acc", 0.9, 0.91, 0.01, 0.01, 3).clear  # 0.01 < 2 * 0.01 / sqrt(3)
    assert not Delta("test_acc", 0.9, 0.91, 0.01, 0.01, 4).clear  # 0.01 is not > 0.01
    assert not Delta("test_acc", 0.9, 0.91, 0.01, 0.02, 3).clear


def _records(values: dict[str, dict[str, list[float]]]) -> list[dict]:
    out = []
    for point, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for seed in range(n):
            out.append(
                {
                    "point": point,
                    "label": point,
                    "entry": point,
                    "params": {},
                    "seed": seed,
                    "metrics": {k: v[seed] for k, v in metrics.items()},
                    "history": [],
                }
            )
    return out


RECORDS = _records(
    {
        "none": {"test_acc": [0.90, 0.92, 0.91], "zero_frac": [0.26, 0.25, 0.27]},
        "act": {"test_acc": [0.91, 0.93, 0.92], "zero_frac": [0.86, 0.85, 0.87]},
        "L2": {"test_acc": [0.88, 0.93, 0.90], "zero_frac": [0.26, 0.25, 0.27]},
        "dead": {"test_acc": [0.10, 0.10, 0.10], "zero_frac": [1.0, 1.0, 1.0]},
    }
)


def test_each_configuration_gets_paired_changes_and_a_verdict_from_them() -> None:
    rows = {c.point: c for c in compare(RECORDS, "none", {"act": "L1(l1=0.01) on act*"})}
    assert rows["none"].is_baseline
    assert rows["none"].verdict == "baseline"
    act = rows["act"]
    assert act.settings == "L1(l1=0.01) on act*"
    assert act.deltas["test_acc"].mean == pytest.approx(0.01)
    assert act.verdict == "better: test acc +1.0 ± 0.0 pts; zeros 26 → 86 %"
    assert rows["L2"].verdict.startswith("no clear change: test acc −0.7 ± 1.5 pts")
    assert rows["dead"].collapsed
    assert rows["dead"].verdict == "collapsed: test acc −81.0 ± 1.0 pts; zeros 26 → 100 %"
    assert all(not c.deltas for c in compare(RECORDS, None))


def test_verdict_words() -> None:
    worse = {"test_acc": Delta("test_acc", 0.9, 0.8, -0.1, 0.01, 3)}
    assert verdict(worse, "test_acc") == "worse: test acc −10.0 ± 1.0 pts"
    one = {"test_acc": Delta("test_acc", 0.9, 0.8, -0.1, math.nan, 1)}
    assert verdict(one, "test_acc") == "one seed, not judged: test acc −10.0 ± ? pts"
    assert verdict({}, "test_acc") == "not compared"


def test_the_baseline_is_declared_or_named_none() -> None:
    points = [("none", "none", "none"), ("L2_l2=0.01", "L2 l2=0.01", "L2"), ("b", "b", "B")]
    assert find_baseline(points) == "none"
    assert find_baseline(points, "L2 l2=0.01") == "L2_l2=0.01"
    assert find_baseline(points, "B") == "b"
    assert find_baseline(points[1:]) is None


def _study(**top: object) -> dict:
    return {
        "name": "s",
        "data": {"name": "digits"},
        "model": {"sizes": [64, 8, 10]},
        "grid": [
            {"name": "plain"},
            {
                "name": "L2",
                "rules": {
                    "fc*": {
                        "kernel": {"class_name": "L2", "config": {"l2": {"values": [1e-3, 1e-2]}}}
                    }
                },
            },
        ],
        **top,
    }


def test_study_key_baseline_names_a_point() -> None:
    assert parse_study(_study(baseline="plain")).baseline == "plain"
    assert parse_study(_study(baseline="L2 l2=0.01")).baseline == "L2_l2=0.01"
    assert parse_study(_study()).baseline is None
    with pytest.raises(
        StudyError, match=r"study\.baseline: grid entry 'L2' has 2 points; name one"
    ):
        parse_study(_study(baseline="L2"))
    with pytest.raises(StudyError, match=r"study\.baseline: no grid point has this name .*'nope'"):
        parse_study(_study(baseline="nope"))
    with pytest.raises(StudyError, match=r"study\.baseline: expected the name of a grid point"):
        parse_study(_study(baseline=3))


# -- honest numbers --------------------------------------------------------------------------


def test_a_stack_time_is_counted_once_and_members_have_no_time_of_their_own() -> None:
    records = [{"metrics": {"seconds": 2.0}}, {"metrics": {"seconds": 3.0}}]
    records += [{"metrics": {"stack_seconds": 12.5, "stack_size": 4.0}} for _ in range(4)]
    records += [{"metrics": {"stack_seconds": 7.0, "stack_size": 2.0}} for _ in range(2)]
    assert training_time(records) == {
        "alone": [2.0, 3.0],
        "stacks": [(12.5, 4), (7.0, 2)],
        "total": 24.5,
    }


def test_a_metric_a_configuration_does_not_record_is_na_not_zero() -> None:
    records = _records({"mlp": {"test_acc": [0.9], "zero_frac": [0.3]}, "cnn": {"test_acc": [0.8]}})
    summary = summarize(records)
    _, rows = table_rows(summary, [metric("test_acc"), metric("zero_frac")])
    assert rows == [["mlp", "1", "90.0 ± 0.0", "30.0 ± 0.0"], ["cnn", "1", "80.0 ± 0.0", "n/a"]]


def test_every_metric_has_one_description() -> None:
    assert set(DESCRIPTIONS) == {m.key for m in METRICS}
    assert all(text.endswith(".") for text in DESCRIPTIONS.values())


# -- figures --------------------------------------------------------------------------------


def test_a_collapsed_configuration_does_not_stretch_the_accuracy_axis() -> None:
    summary = summarize(RECORDS)
    fig = results_figure(summary, [metric("test_acc")], collapsed={"dead"})
    low, high = fig.axes[0].get_xlim()
    assert 85 < low < 90
    assert 93 < high < 96
    text = svg(fig)
    assert "collapsed: 10.0" in text
    assert "<title>dead: test accuracy 10.0 ± 0.0 (%) (collapsed; off the axis)</title>" in text
    assert all(a["x"] and a["y"] for a in axis_labels(fig))


def test_figures_are_built_under_the_report_style_with_two_minor_ticks_a_decade() -> None:
    import matplotlib

    before = matplotlib.rcParams["axes.titley"]
    curves = {
        p: {"label": p, "loss": [2.0 * 0.7**e for e in range(12)], "val_loss": [0.9] * 12}
        for p in ("a", "b")
    }
    fig = learning_curves_figure(curves, held_out="validation")
    png(fig)  # a draw: ticks placed
    assert matplotlib.rcParams["axes.titley"] == before  # the style does not leak
    ax = fig.axes[0]
    assert ax.xaxis.get_major_formatter().get_useOffset() is False  # values in full
    assert ax.get_yscale() == "log"
    low, high = ax.get_ylim()
    minor = [t for t in ax.yaxis.get_minorticklocs() if low <= t <= high]
    mantissas = {round(t / 10 ** math.floor(math.log10(t)), 6) for t in minor}
    assert mantissas == {2.0, 5.0}, minor  # matplotlib's default: 2, 3, ..., 9
    # the second panel shares the y axis: its tick labels are the first panel's
    assert all(not t.get_visible() for t in fig.axes[1].get_yticklabels())
    assert any(
        t.get_visible() and t.get_text()
        for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels()
    )


# -- the HTML of a real run ---------------------------------------------------------------


class _Report(HTMLParser):
    """The parts of report.html the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.overview: list[list[str]] = []
        self.overview_rows: list[dict[str, str]] = []
        self.headers: dict[str, list[str]] = {}
        self.figures: list[dict[str, str]] = []
        self.terms: list[str] = []
        self.titles = 0
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._dt: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.headers[self._table] = []
        elif tag == "tr" and self._table == "overview" and "data-point" in a:
            self.overview.append([])
            self.overview_rows.append(a)  # type: ignore[arg-type]
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figure":
            self.figures.append(a)  # type: ignore[arg-type]
        elif tag == "dt":
            self._dt = []
        elif tag == "title" and self.figures:
            self.titles += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if tag == "th" and self._table is not None:
                self.headers[self._table].append(text)
            elif self._table == "overview" and self.overview:
                self.overview[-1].append(text)
            self._cell = None
        elif tag == "dt" and self._dt is not None:
            self.terms.append("".join(self._dt).split(" — ")[0].strip())
            self._dt = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._dt is not None:
            self._dt.append(data)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Report]:
    folder = tmp_path_factory.mktemp("overview")
    out = folder / "run"
    assert main(["run", str(write_tiny(folder, epochs=2)), "--out", str(out), "--no-progress"]) == 0
    parsed = _Report()
    parsed.feed((out / "report.html").read_text(encoding="utf-8"))
    return out, parsed


def test_html_first_screen_has_settings_baseline_changes_and_verdicts(tiny_report) -> None:
    _, page = tiny_report
    headers = page.headers["overview"]
    assert headers[:4] == ["config", "settings", "verdict", "seeds"]
    assert {"test %", "gap pts", "test NLL", "ECE %", "zeros %", "‖W‖₂"} <= set(headers)
    rows = {r[0]: dict(zip(headers, r, strict=True)) for r in page.overview}
    assert list(rows) == ["none", "L2 l2=0.0001", "L2 l2=0.01"]
    assert rows["none"]["settings"] == "no regularization"
    assert rows["none"]["verdict"] == "baseline"
    assert rows["L2 l2=0.01"]["settings"] == "L2(l2=0.01) on fc*"
    assert rows["L2 l2=0.0001"]["settings"] == "L2(l2=1e-4) on fc*"
    for label in ("L2 l2=0.0001", "L2 l2=0.01"):
        assert "Δ " in rows[label]["test %"]
        assert "pts" in rows[label]["test %"]
        assert "Δ " in rows[label]["‖W‖₂"]
        assert rows[label]["verdict"].split(":")[0] in (
            "better",
            "worse",
            "no clear change",
            "collapsed",
        )
        assert "test acc " in rows[label]["verdict"]
    assert "Δ" not in rows["none"]["test %"]


def test_html_glossary_defines_every_column(tiny_report) -> None:
    _, page = tiny_report
    columns = set(page.headers["overview"]) | set(page.headers["results"])
    assert columns <= set(page.terms)
    assert len(page.terms) == len(set(page.terms))  # one definition each


def test_html_figures_are_inline_svg_with_labelled_axes_and_hover_values(tiny_report) -> None:
    out, page = tiny_report
    names = {f["id"] for f in page.figures}
    assert {"fig-results", "fig-learning_curves", "fig-weights", "fig-reliability"} <= names
    for figure in page.figures:
        axes = json.loads(figure["data-axes"])
        assert axes, figure["id"]
        for panel in axes:
            assert panel["x"], (figure["id"], panel)
            assert panel["y"], (figure["id"], panel)
    assert page.titles >= len(page.figures)  # hover values: SVG <title>s
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "## What each configuration did" in md
    assert "| L2 l2=0.01 | L2(l2=0.01) on fc* |" in md
    assert "![" in md
    assert (out / "results.png").is_file()
    assert "## Glossary" in md
