"""What a search optimises, and the callback that reports it to the pruner every epoch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna

from reglab.lab.metrics import OBJECTIVES
from reglab.training import Callback

__all__ = ["LOWER_IS_BETTER", "PruningReport", "lower_is_better", "objective_value"]

#: Objective name endings whose lower values are better (they are negated: the study maximises).
LOWER_IS_BETTER = ("loss", "mse", "ece", "nll", "recon", "ppl")


def lower_is_better(name: str) -> bool:
    """Whether a lower ``name`` (a metric key) is better: the direction of the objective that
    reads it (:data:`~reglab.lab.metrics.OBJECTIVES`: ``weight_norm``, ``param_count``),
    else a name ending in :data:`LOWER_IS_BETTER`."""
    for objective in OBJECTIVES.values():
        if objective.key == name:
            return objective.direction == "minimize"
    return name.endswith(LOWER_IS_BETTER)


def objective_value(logs: Mapping[str, Any], name: str | None = None) -> float | None:
    """What a search maximises, read from one epoch's logs (a history row): the validation
    metric ``name`` — by default ``val_acc`` when logged, else ``val_loss`` — negated when
    lower is better (a name ending in loss, mse, ece, nll, recon or ppl). None when it is
    not logged or not finite. :class:`~reglab.lab.sweep.search.SearchSweep` passes the key of
    the sweep's objective (:func:`reglab.lab.sweep.objective.study_objective`).

    >>> objective_value({"val_acc": 0.9, "val_loss": 0.3})
    0.9
    >>> objective_value({"val_loss": 0.3})
    -0.3
    """
    if name is None:
        name = "val_acc" if "val_acc" in logs else "val_loss"
    value = logs.get(name)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return -float(value) if lower_is_better(name) else float(value)


class PruningReport(Callback):
    """Reports :func:`objective_value` to an Optuna trial after every epoch (step = epochs
    done) and stops training when its pruner says so (``pruned_at``: that epoch)."""

    def __init__(self, trial: optuna.Trial, name: str | None = None) -> None:
        self.trial, self.name = trial, name
        self.pruned_at: int | None = None

    def check(self, logs: Mapping[str, Any], step: int) -> bool:
        """Report ``logs``' objective at ``step`` (epochs done) and ask the pruner: True (and
        ``pruned_at = step``) when the trial stops here. Nothing is reported, and the trial
        goes on, when the objective is not logged or not finite. A stacked search calls it for
        each member (:mod:`reglab.lab.sweep.stacked_search`)."""
        value = objective_value(logs, self.name)
        if value is None:
            return False
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned_at = step
            return True
        return False

    def on_epoch_end(self, state: Any) -> None:
        step = state.epoch + 1
        if self.check(state.logs, step):
            state.stop, state.stop_reason = True, f"pruned at epoch {step}"
