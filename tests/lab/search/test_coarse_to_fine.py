"""Coarse-to-fine: decades, refinement inside the best decade, noise, evidence, stages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reglab.lab.search import decade_values, evidence, find_axes, first_stage, next_stage, refine
from reglab.lab.settings.schema import StudyError

OPTIMUM = 3e-4


def _metric(value: float, seed: int, noise: float = 0.002) -> float:
    """A smooth validation accuracy peaked at 3e-4 in log space, plus seeded noise."""
    rng = np.random.default_rng([seed, round(value * 1e12)])
    return 0.98 - 0.02 * (math.log10(value) - math.log10(OPTIMUM)) ** 2 + noise * rng.normal()


def _measure(values, results, seeds=(0, 1, 2), noise=0.002):
    for v in values:
        results[v] = [_metric(v, s, noise) for s in seeds]


def test_decades():
    assert decade_values(1e-6, 1e-1) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert decade_values(3e-5, 2e-2) == [1e-4, 1e-3, 1e-2]
    assert decade_values(2e-4, 5e-4) == [2e-4, 5e-4]  # no power of ten inside: the ends


def test_three_stages_find_the_known_optimum():
    results: dict[float, list[float]] = {}
    _measure(decade_values(1e-6, 1e-1), results)
    for _ in range(2):  # stages 2 and 3
        step = refine(results, points=5)
        assert step.values, step
        _measure(step.values, results)
    best = refine(results, points=5).best
    assert abs(math.log10(best / OPTIMUM)) < math.log10(1.5), (best, sorted(results))
    # 6 + at most 4 + at most 4 values measured, not a fine grid over five decades
    assert len(results) <= 14


def test_a_clear_winner_refines_its_own_cell():
    step = refine({1e-4: [0.95, 0.951], 1e-3: [0.97, 0.971], 1e-2: [0.90, 0.901]}, points=5)
    assert step.best == 1e-3
    assert step.neighbour is None
    lo, hi = step.interval
    assert lo == pytest.approx(math.sqrt(1e-7))
    assert hi == pytest.approx(math.sqrt(1e-5))
    assert step.values == [0.000316, 0.000562, 0.00178, 0.00316]  # 1e-3 already measured


def test_a_neighbour_within_noise_widens_the_interval_toward_it():
    # 1e-4 is best, 1e-3 is within noise (0.972 ± 0.01 vs 0.975 ± 0.01); 1e-5 is far below
    results = {1e-5: [0.90, 0.901], 1e-4: [0.965, 0.985], 1e-3: [0.962, 0.982]}
    step = refine(results, points=4)
    assert step.best == 1e-4
    assert step.neighbour == 1e-3
    assert step.interval == (pytest.approx(math.sqrt(1e-9)), 1e-3)
    # without the noise the same means give the best's cell only
    tight = {1e-5: [0.90, 0.90], 1e-4: [0.975, 0.975], 1e-3: [0.972, 0.972]}
    assert refine(tight, points=4).neighbour is None
    assert refine(tight, points=4).interval[1] == pytest.approx(math.sqrt(1e-7))


def test_minimizing_picks_the_lowest_mean():
    assert refine({1e-3: [0.5], 1e-2: [0.2], 1e-1: [0.9]}, maximize=False).best == 1e-2


def test_evidence_line():
    results = {1e-4: [0.973, 0.977], 3e-4: [0.977, 0.981], 1e-3: [0.90, 0.91]}
    assert (
        evidence("l2", results, "val_acc", scale=100)
        == "l2 = 3e-4: val_acc 97.9 ± 0.3 vs 97.5 ± 0.3 at 1e-4"
    )
    assert evidence("l2", {3.16e-4: [0.5]}, "val_loss", maximize=False, decimals=2) == (
        "l2 = 3.16e-4: val_loss 0.50 ± 0.00"
    )


def test_stages_over_several_axes_refine_each_log_axis_at_the_best_point():
    entry = {
        "l2": {"log": [1e-6, 1e-1]},
        "l1": {"log": [1e-6, 1e-2]},
        "sizes": {"values": [[32], [64]]},
    }
    space = find_axes(entry)
    stage = first_stage(space)
    assert len(stage) == 6 * 5 * 2

    def metric(p, seed):  # optimum l2 = 3e-4, l1 = 1e-5, sizes [64]
        rng = np.random.default_rng([seed, len(str(p))])
        return (
            0.98
            - 0.02 * (math.log10(p["l2"] / 3e-4)) ** 2
            - 0.01 * (math.log10(p["l1"] / 1e-5)) ** 2
            - (0.01 if p["sizes"] == [32] else 0.0)
            + 0.001 * rng.normal()
        )

    results = [(p, [metric(p, s) for s in (0, 1)]) for p in stage]
    for _ in range(2):
        new = next_stage(space, results, points=5)
        assert new
        assert all(p["sizes"] == [64] for p in new)
        results += [(p, [metric(p, s) for s in (0, 1)]) for p in new]
    best = max(results, key=lambda r: np.mean(r[1]))[0]
    assert abs(math.log10(best["l2"] / 3e-4)) < 0.2, best
    assert abs(math.log10(best["l1"] / 1e-5)) < 0.2, best


def test_coarse_to_fine_needs_log_axes():
    with pytest.raises(StudyError, match=r"needs at least one \{log = \[a, b\]\} axis"):
        first_stage(find_axes({"sizes": {"values": [[32], [64]]}}))
    with pytest.raises(StudyError, match=r"^lr: method 'coarse-to-fine' refines"):
        first_stage(find_axes({"lr": {"linear": [0.1, 1.0]}}))
