"""Train one grid point with one seed and measure what happened: dispatch to the trial kinds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reglab.lab.autoencoding import run_autoencoder
from reglab.lab.classifier import run_classifier
from reglab.lab.datasets import image_shape, load_data
from reglab.lab.ensemble import run_bagging
from reglab.lab.language import run_language_model
from reglab.lab.regression import run_regression
from reglab.lab.trial import TrialOutcome

__all__ = ["TrialOutcome", "image_shape", "load_data", "run_trial"]


def run_trial(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None = None
) -> TrialOutcome:
    """Train the model described by a resolved grid-point ``config`` with ``seed``.

    Deterministic on CPU for a given config and seed (initialisation, batch order, dropout and
    noise all derive from ``seed``). ``epoch_callback(epoch, epochs)`` reports progress.
    Three kinds of trial: a classifier (default), an autoencoder (``model.kind =
    "autoencoder"``), or a bagged ensemble of classifiers (a grid ``ensemble`` table).
    """
    if config.get("ensemble"):
        return run_bagging(config, seed)
    if config["model"]["kind"] == "autoencoder":
        return run_autoencoder(config, seed, epoch_callback)
    if config["model"]["kind"] == "linear":
        return run_regression(config, seed, epoch_callback)
    if config["model"]["kind"] == "lstm-lm":
        return run_language_model(config, seed, epoch_callback)

    return run_classifier(config, seed, epoch_callback)
