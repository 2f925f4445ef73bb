"""The lab's metrics, defined once: key, header, scale, decimals, which way is better, and
where each view shows it.

The console table, ``summary.md``, ``report.html``, the figures and the sweep's objective all
ask this registry; nothing else spells a metric's header or precision.

The sweep chooses on validation only: :data:`OBJECTIVES` names the validation metrics a study
may be optimised for, and :data:`FAMILY_OBJECTIVES` each trial family's default (``val_acc``
for classifiers; a validation loss for the others). A multi-objective search may add
statistics of the trained model itself (``zeros``, ``sparsity``, ``weight_norm``,
``model_size``), measured on its weights, on no data. Test metrics are reported for every
configuration and decide nothing (:mod:`reglab.lab.sweep.objective` computes the value).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DECIDING",
    "DESCRIPTIONS",
    "FAMILY_OBJECTIVES",
    "METRICS",
    "NONFINITE",
    "OBJECTIVES",
    "STOP_EPOCH",
    "Metric",
    "Objective",
    "describe",
    "format_value",
    "metric",
    "objective_values",
    "pick",
    "strict_metrics",
]


@dataclass(frozen=True)
class Metric:
    """One metric a trial may record.

    Attributes:
        key: its name in ``metrics.json`` and the storage.
        header: the column header of tables.
        title: the longer name used in figures.
        scale: shown as ``scale * value`` (100: a fraction shown in percent).
        decimals: digits after the point, everywhere.
        better: ``"max"``, ``"min"`` or None (a descriptive statistic).
        console: priority among the console table's few columns (None: not shown there).
        spread: the console shows ``mean±std`` (else the mean).
        bar: priority among the per-configuration bar panels (None: not drawn).
        sweep: priority among the metrics plotted against a swept coefficient.
    """

    key: str
    header: str
    title: str
    scale: float = 1.0
    decimals: int = 3
    better: str | None = None
    console: int | None = None
    spread: bool = False
    bar: int | None = None
    sweep: int | None = None


_PCT = {"scale": 100.0, "decimals": 1}

METRICS: tuple[Metric, ...] = (
    Metric("train_acc", "train %", "train accuracy", **_PCT, better="max", console=1),
    Metric("val_acc", "val %", "validation accuracy", **_PCT, better="max", console=2, spread=True),
    Metric("val_loss", "val NLL", "validation NLL", decimals=3, better="min"),
    Metric(
        "test_acc",
        "test %",
        "test accuracy",
        **_PCT,
        better="max",
        console=2,
        spread=True,
        bar=1,
        sweep=5,
    ),
    Metric(
        "gap",
        "gap pts",
        "train − test accuracy",
        **_PCT,
        better="min",
        console=3,
        spread=True,
        bar=2,
        sweep=6,
    ),
    Metric("test_loss", "test NLL", "test NLL", decimals=3, better="min"),
    Metric("test_ece", "ECE %", "expected calibration error", **_PCT, better="min", console=4),
    Metric(
        "test_ece_ts", "ECE T %", "ECE after temperature scaling", **_PCT, better="min", console=5
    ),
    Metric("val_ece", "val ECE %", "validation expected calibration error", **_PCT, better="min"),
    Metric("temperature", "fitted T", "fitted temperature", decimals=2),
    Metric("test_acc_mc", "MC %", "MC-dropout test accuracy", **_PCT, better="max", console=6),
    Metric("parity_acc", "parity %", "parity-head test accuracy", **_PCT, better="max"),
    Metric(
        "probe_test_acc",
        "probe %",
        "linear probe on the codes",
        **_PCT,
        better="max",
        console=7,
        spread=True,
    ),
    Metric("probe_raw_acc", "raw probe %", "linear probe on raw inputs", **_PCT, better="max"),
    Metric("mean_activation", "mean act.", "mean hidden activation", decimals=3),
    Metric("train_ppl", "train ppl", "train perplexity", decimals=1, better="min"),
    Metric(
        "val_ppl",
        "val ppl",
        "validation perplexity",
        decimals=1,
        better="min",
        console=9,
        spread=True,
        bar=8,
    ),
    Metric(
        "test_ppl",
        "test ppl",
        "test perplexity",
        decimals=1,
        better="min",
        console=10,
        spread=True,
        sweep=1,
    ),
    Metric("act_sq", "E[h²]", "E[h²] (AR)", decimals=5, console=11, bar=9),
    Metric("act_diff_sq", "E[Δh²]", "E[Δh²] (TAR)", decimals=6, console=12, bar=10),
    Metric(
        "train_mse", "train MSE", "train MSE", decimals=4, better="min", console=13, bar=6, sweep=3
    ),
    Metric("val_mse", "val MSE", "validation MSE", decimals=4, better="min", console=8),
    Metric(
        "test_mse",
        "test MSE",
        "test MSE",
        decimals=4,
        better="min",
        console=8,
        spread=True,
        bar=5,
        sweep=2,
    ),
    Metric("equiv_l2", "equiv. L2", "equivalent L2 coefficient", decimals=4, console=14),
    Metric("ridge_gap", "off ridge path", "distance from the ridge path", decimals=5),
    Metric("pinv_gap", "from pinv", "distance from pinv(X) y", decimals=4, sweep=4),
    Metric("mean_member_acc", "member %", "mean member accuracy", **_PCT, better="max", console=15),
    Metric("members", "k", "members", decimals=0),
    Metric(
        "ensemble_mse", "ens. MSE", "ensemble squared error", decimals=4, better="min", sweep=11
    ),
    Metric("predicted_mse", "v/k+(k-1)c/k", "predicted ensemble error", decimals=4),
    Metric(
        "val_recon",
        "val recon",
        "validation reconstruction error",
        decimals=3,
        better="min",
        console=16,
    ),
    Metric(
        "test_recon",
        "recon",
        "test reconstruction error",
        decimals=3,
        better="min",
        console=16,
        spread=True,
        bar=4,
        sweep=7,
    ),
    Metric("pca_recon", "PCA recon", "PCA reconstruction error", decimals=3),
    Metric("max_angle", "max angle °", "largest principal angle", decimals=2),
    Metric("fvu", "FVU", "fraction of variance unexplained", decimals=3, console=17, sweep=8),
    Metric("l0", "L0", "active code units", decimals=1, console=18, sweep=10),
    Metric("dead_fraction", "dead %", "dead features", **_PCT),
    Metric(
        "zero_frac", "zeros %", "exact-zero hidden activations", **_PCT, console=19, bar=3, sweep=9
    ),
    Metric("weight_norm", "‖W‖₂", "kernel L2 norm", decimals=1, console=20, bar=7),
    Metric("max_unit_norm", "max unit ‖w‖", "largest unit norm", decimals=2),
    Metric("weight_small_frac", "w≈0 %", "kernel entries with |w| < 1e-3", **_PCT),
    Metric("weight_zero_frac", "w=0 %", "kernel entries exactly 0", **_PCT),
    Metric("param_count", "params", "trainable parameters", decimals=0, better="min"),
    Metric("test_acc_final", "final %", "test accuracy of the last epoch", **_PCT, better="max"),
    Metric("test_acc_oracle", "oracle %", "best test accuracy of any epoch", **_PCT, better="max"),
    Metric("epochs_run", "epochs", "epochs trained", decimals=0),
    Metric("seconds", "s", "training seconds", decimals=1, console=21),
    Metric("stack_seconds", "stack s", "training seconds of the whole stack", decimals=1),
    Metric("stack_size", "stack k", "members of the stack", decimals=0),
)
_BY_KEY = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Objective:
    """A metric a sweep chooses on: ``name`` is what Optuna's storage and dashboards call it
    (``study.set_metric_names``), ``key`` the metric it reads from a trial's metrics,
    ``direction`` Optuna's ``"maximize"`` or ``"minimize"``, ``test`` the test metric reported
    next to the chosen configuration (it decides nothing; None: none), ``source`` where it is
    measured: ``"validation"`` (the held-out validation rows) or ``"model"`` (the trained
    weights themselves, no data: zeros, norms, size — a second objective of a search)."""

    name: str
    key: str
    direction: str
    test: str | None = None
    source: str = "validation"

    @property
    def better(self) -> str:
        """``"max"`` or ``"min"``, as :attr:`Metric.better` says it."""
        return "max" if self.direction == "maximize" else "min"


#: Every objective a sweep may choose on; each reads a validation metric, never a test one.
OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("val_acc", "val_acc", "maximize", "test_acc"),
        Objective("val_loss", "val_loss", "minimize", "test_loss"),
        Objective("val_recon", "val_recon", "minimize", "test_recon"),
        Objective("val_mse", "val_mse", "minimize", "test_mse"),
        Objective("val_ppl", "val_ppl", "minimize", "test_ppl"),
        Objective("val_ece", "val_ece", "minimize", "test_ece"),
        Objective("zeros", "weight_zero_frac", "maximize", source="model"),
        Objective("sparsity", "weight_small_frac", "maximize", source="model"),
        Objective("weight_norm", "weight_norm", "minimize", source="model"),
        Objective("model_size", "param_count", "minimize", source="model"),
    )
}
#: The default objective of each trial family (:data:`reglab.lab.settings.registry.FAMILIES`).
FAMILY_OBJECTIVES: dict[str, str] = {
    "classifier": "val_acc",
    "autoencoder": "val_recon",
    "regression": "val_mse",
    "language": "val_ppl",
}

#: What each registered metric measures, in one sentence: the report's glossary. Kept apart
#: from :data:`METRICS` (one entry per key; a test checks that every metric has one).
DESCRIPTIONS: dict[str, str] = {
    "train_acc": "Accuracy on the training rows (labelled ones), after the last epoch.",
    "val_acc": "Accuracy on the validation rows held out of the training split: what the "
    "sweep chooses on (the test split decides nothing).",
    "val_loss": "Mean cross-entropy of the true class on the validation rows.",
    "val_ece": "Expected calibration error on the validation rows (15 equal-width "
    "confidence bins): what a search may minimise for calibration.",
    "test_acc": "Accuracy on the test split, after the last epoch (or the restored best "
    "weights with early stopping).",
    "gap": "Training accuracy minus test accuracy, in percentage points: how much the model "
    "overfits.",
    "test_loss": "Mean cross-entropy (negative log-likelihood) of the true class on the test "
    "split; lower means better probabilities.",
    "test_ece": "Expected calibration error on the test split (15 equal-width confidence "
    "bins): the count-weighted mean |accuracy − confidence|.",
    "test_ece_ts": "ECE after fitting a temperature on the validation split (temperature scaling).",
    "temperature": "The temperature T fitted on the validation split (logits / T); > 1 means "
    "the model was over-confident.",
    "test_acc_mc": "Test accuracy of MC dropout: the mean prediction of 20 stochastic forward "
    "passes with dropout on.",
    "parity_acc": "Test accuracy of the multi-task parity head (is the digit odd?).",
    "probe_test_acc": "Test accuracy of a logistic-regression probe trained on the codes.",
    "probe_raw_acc": "Test accuracy of the same probe trained on the raw inputs (reference).",
    "mean_activation": "Mean hidden activation over the test split (hooked `act*` modules).",
    "train_ppl": "Perplexity (exp of the mean token NLL) on the training text.",
    "val_ppl": "Perplexity on the validation text.",
    "test_ppl": "Perplexity on the test text.",
    "act_sq": "Mean squared hidden activation E[h²] (what activation regularization, AR, "
    "penalises).",
    "act_diff_sq": "Mean squared change of the hidden state between time steps E[Δh²] (what "
    "temporal activation regularization, TAR, penalises).",
    "train_mse": "Mean squared error on the training rows.",
    "val_mse": "Mean squared error on the validation rows: what the sweep chooses on.",
    "test_mse": "Mean squared error on the test rows.",
    "equiv_l2": "The L2 coefficient whose ridge solution is closest to the learned weights.",
    "ridge_gap": "Distance of the learned weights from the ridge-regression path.",
    "pinv_gap": "Distance of the learned weights from the minimum-norm solution pinv(X) y.",
    "mean_member_acc": "Mean test accuracy of the ensemble's members, each alone.",
    "members": "Number of members k of the ensemble.",
    "ensemble_mse": "Squared error of the ensemble's class probabilities against the one-hot "
    "labels.",
    "predicted_mse": "The ensemble error predicted from the members' variance v and "
    "covariance c: v/k + (k−1)c/k.",
    "val_recon": "Reconstruction error on the validation rows: what the sweep chooses on.",
    "test_recon": "Reconstruction error (mean squared error) on the test split.",
    "pca_recon": "Reconstruction error of PCA with as many components as code units "
    "(the optimum for a linear autoencoder).",
    "max_angle": "Largest principal angle between the learned subspace and PCA's, in degrees.",
    "fvu": "Fraction of variance unexplained by the reconstruction.",
    "l0": "Mean number of non-zero code units per input.",
    "dead_fraction": "Share of code units that are zero on every test input.",
    "zero_frac": "Share of hidden activations (hooked `act*` modules) that are exactly 0 on the "
    "test split; n/a for a model without recorded activations.",
    "weight_norm": "L2 norm of all kernels together, sqrt(Σ w²) (biases excluded); for an "
    "ensemble, the mean over its members.",
    "max_unit_norm": "Largest L2 norm of one output unit's incoming weights (what MaxNorm bounds).",
    "weight_small_frac": "Share of kernel entries with |w| < 1e-3.",
    "weight_zero_frac": "Share of kernel entries exactly 0 (proximal L1, pruning).",
    "param_count": "Number of trainable parameters of the model (weights and biases).",
    "test_acc_final": "Test accuracy of the last epoch, without any stopping rule.",
    "test_acc_oracle": "Best test accuracy of any epoch: an upper bound that no stopping rule "
    "may reach honestly (it peeks at the test split).",
    "epochs_run": "Epochs actually trained (fewer when early stopping fired).",
    "seconds": "Wall-clock training time of a trial trained alone; n/a for a stacked trial.",
    "stack_seconds": "Wall-clock training time of the whole stack a trial was trained in, "
    "shared by its members (counted once per stack in the totals).",
    "stack_size": "Number of trials trained together in the stack.",
}

#: The metrics that decide whether a configuration helped: compared with the baseline, per
#: seed, on the report's first screen (those a study recorded, in this order).
DECIDING: tuple[str, ...] = (
    "val_acc",
    "test_acc",
    "gap",
    "test_loss",
    "test_ece",
    "test_mse",
    "val_ppl",
    "test_ppl",
    "test_recon",
    "zero_frac",
    "weight_small_frac",
    "weight_norm",
)


def describe(key: str) -> str:
    """One sentence saying what metric ``key`` measures ("" when it has none)."""
    return DESCRIPTIONS.get(key, "")


#: Post-hoc stopping's ``stop/<criterion>``: the epoch a criterion stops at (mean over seeds).
STOP_EPOCH = Metric("stop", "stop epoch", "epoch the criterion stops at", decimals=1)


def metric(key: str) -> Metric:
    """The registered metric ``key`` (an error names the known ones)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; known: {', '.join(_BY_KEY)}") from None


def pick(recorded: Iterable[str], view: str, limit: int | None = None) -> list[Metric]:
    """The registered metrics in ``recorded`` that ``view`` (``"console"``, ``"bar"``,
    ``"sweep"``, or ``"table"`` for all) shows, in its order."""
    present = set(recorded)
    if view == "table":
        chosen = [m for m in METRICS if m.key in present]
    else:
        chosen = sorted(
            (m for m in METRICS if m.key in present and getattr(m, view) is not None),
            key=lambda m: getattr(m, view),
        )
    return chosen[:limit] if limit is not None else chosen


#: The key of a stored metrics dict that says which values were not finite (``"nan"``,
#: ``"inf"``, ``"-inf"``); those values are stored as null.
NONFINITE = "nonfinite"


def strict_metrics(metrics: Mapping[str, float]) -> dict[str, Any]:
    """``metrics`` as strict JSON: a non-finite value becomes None and is named in
    ``metrics[NONFINITE]`` (e.g. ``{"test_nll": None, "nonfinite": {"test_nll": "inf"}}``)."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for key, value in metrics.items():
        value = float(value)
        if math.isfinite(value):
            out[key] = value
        else:
            out[key] = None
            reasons[key] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if reasons:
        out[NONFINITE] = reasons
    return out


def objective_values(objectives: Iterable[Objective], values: Iterable[float]) -> str:
    """``val % 91.2, w=0 % 35.0``: each objective's value with its metric's header and
    decimals (a Pareto point, printed or listed beside its figure)."""
    parts = []
    for objective, value in zip(objectives, values, strict=True):
        shown = metric(objective.key)
        parts.append(f"{shown.header} {format_value(shown, value)}")
    return ", ".join(parts)


def format_value(m: Metric, mean: float, std: float | None = None) -> str:
    """``scale · mean`` (``± scale · std``) with the metric's decimals; "–" when not
    measured."""
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{m.scale * mean:.{m.decimals}f}"
    if std is None:
        return text
    return f"{text} ± {m.scale * std:.{m.decimals}f}"
