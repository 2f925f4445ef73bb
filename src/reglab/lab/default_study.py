"""The embedded default study run by ``reglab run`` with no argument.

A deliberately over-parameterised ReLU MLP (64-256-256-10) on scikit-learn's bundled digits,
trained without regularization and with each basic regularizer, over several seeds. Runs in
well under a minute on a 2-core CPU and needs no download.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from reglab.constraints import MaxNorm
from reglab.data import digits
from reglab.lab.models import mlp
from reglab.lab.trial import Rules, TrialResult, train_classifier
from reglab.penalties import L1, L1L2, L2

__all__ = ["DEFAULT_GRID", "Row", "run_default_study", "summarize"]

_HIDDEN = "act*"  # the hidden ReLU outputs of mlp()
_KERNELS = "fc*"

#: (config name, attach rules) pairs of the default study. Kernel rules cover every Linear
#: weight (never biases); "act-L1" penalises both hidden ReLU outputs (Keras' batch reduction).
DEFAULT_GRID: tuple[tuple[str, Rules | None], ...] = (
    ("none", None),
    ("L2 1e-3", {_KERNELS: {"kernel": L2(1e-3)}}),
    ("L1 1e-4", {_KERNELS: {"kernel": L1(1e-4)}}),
    ("L1L2 1e-5/1e-3", {_KERNELS: {"kernel": L1L2(l1=1e-5, l2=1e-3)}}),
    ("act-L1 1e-4", {_HIDDEN: {"activity": L1(1e-4)}}),
    ("act-L1 1e-3", {_HIDDEN: {"activity": L1(1e-3)}}),
    ("act-L1 1e-2", {_HIDDEN: {"activity": L1(1e-2)}}),
    ("max-norm 1", {_KERNELS: {"kernel_constraint": MaxNorm(1.0)}}),
)


@dataclass(frozen=True)
class Row:
    """One grid point summarised over seeds: ``(mean, std)`` of each metric."""

    config: str
    n_seeds: int
    metrics: dict[str, tuple[float, float]]


def _model() -> nn.Module:
    return mlp([64, 256, 256, 10])


def run_default_study(
    *,
    epochs: int = 30,
    seeds: Iterable[int] = (0, 1, 2),
    grid: Iterable[tuple[str, Rules | None]] = DEFAULT_GRID,
    on_trial: Callable[[str, int, TrialResult], Any] | None = None,
) -> dict[str, list[TrialResult]]:
    """Train every grid point with every seed; return ``{config: [result per seed]}``.

    ``on_trial(config, seed, result)`` is called after each trial (progress reporting).
    """
    data = digits()
    seeds = list(seeds)
    results: dict[str, list[TrialResult]] = {}
    for name, rules in grid:
        for seed in seeds:
            result = train_classifier(_model, rules, data, seed=seed, epochs=epochs)
            results.setdefault(name, []).append(result)
            if on_trial is not None:
                on_trial(name, seed, result)
    return results


def summarize(results: dict[str, list[TrialResult]]) -> list[Row]:
    """Mean and (sample) standard deviation over seeds of every reported metric."""
    rows = []
    for config, trials in results.items():
        columns = {
            "train_acc": [t.train_accuracy for t in trials],
            "test_acc": [t.test_accuracy for t in trials],
            "gap": [t.gap for t in trials],
            "zero_frac": [t.zero_fraction for t in trials],
            "weight_norm": [t.weight_norm for t in trials],
            "seconds": [t.seconds for t in trials],
        }
        metrics = {
            k: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for k, v in columns.items()
        }
        rows.append(Row(config, len(trials), metrics))
    return rows
