"""Report numbers from pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.lab.report import (
    coefficient_series,
    curves,
    markdown_table,
    reliability,
    summarize,
    weight_histograms,
)


def _record(point, entry, params, seed, acc, hist):
    return {
        "key": f"{point}__seed{seed}",
        "point": point,
        "label": point,
        "entry": entry,
        "params": params,
        "seed": seed,
        "metrics": {"test_acc": acc, "gap": 1 - acc, "zero_frac": acc / 2},
        "history": [{"loss": h, "val_loss": 2 * h} for h in hist],
    }


RECORDS = [
    _record("b", "L2", {"l2": 1e-2}, 0, 0.8, [3.0, 2.0]),
    _record("b", "L2", {"l2": 1e-2}, 1, 0.6, [1.0, 0.0, 5.0]),
    _record("a", "L2", {"l2": 1e-3}, 0, 0.9, [1.0]),
    _record("n", "none", {}, 0, 0.5, [1.0]),
]


def test_summarize_means_and_sample_std() -> None:
    rows = {r["point"]: r for r in summarize(RECORDS)}
    assert rows["b"]["seeds"] == [0, 1]
    mean, std = rows["b"]["metrics"]["test_acc"]
    assert mean == pytest.approx(0.7)
    assert std == pytest.approx(0.1414213562, rel=1e-6)
    assert rows["a"]["metrics"]["test_acc"] == (0.9, 0.0)


def test_curves_average_seeds_over_the_common_length() -> None:
    c = curves(RECORDS)["b"]
    assert c["loss"] == [2.0, 1.0]
    assert c["val_loss"] == [4.0, 2.0]


def test_coefficient_series_sorted_and_only_for_single_axis_sweeps() -> None:
    series = coefficient_series(summarize(RECORDS))
    assert list(series) == ["L2"]
    assert series["L2"]["x"] == [1e-3, 1e-2]
    assert series["L2"]["test_acc"]["mean"] == pytest.approx([0.9, 0.7])


def test_markdown_table() -> None:
    table = markdown_table(summarize(RECORDS))
    assert table.splitlines()[0].startswith("| config | seeds | train % | val % | val NLL | test %")
    assert "| b | 2 | n/a | n/a | n/a | 70.0 ± 14.1 |" in table  # no train/val recorded


def test_reliability_pools_bins_over_seeds() -> None:
    a = {
        "point": "p",
        "label": "p",
        "reliability": {"count": [2, 0], "confidence": [0.5, 0], "accuracy": [1.0, 0]},
    }
    b = {
        "point": "p",
        "label": "p",
        "reliability": {"count": [6, 4], "confidence": [0.7, 0.9], "accuracy": [0.5, 1.0]},
    }
    pooled = reliability([a, b])["p"]
    assert pooled["count"] == [8, 4]
    assert pooled["confidence"] == pytest.approx([(2 * 0.5 + 6 * 0.7) / 8, 0.9])
    assert pooled["accuracy"] == pytest.approx([(2 * 1.0 + 6 * 0.5) / 8, 1.0])


def test_weight_histograms_share_one_symmetric_range() -> None:
    h = weight_histograms(
        {"a": [np.array([[-1.0, 0.0], [0.0, 0.5]])], "b": [np.zeros((3, 3))]}, bins=4
    )
    assert h["a"]["edges"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert h["a"]["counts"] == [1, 0, 2, 1]
    assert h["b"]["counts"] == [0, 0, 9, 0]
