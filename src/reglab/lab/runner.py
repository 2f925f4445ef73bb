"""Train one grid point with one seed and measure what happened: dispatch to the trial kinds."""

from __future__ import annotations

from reglab.lab.autoencoding import run_autoencoder
from reglab.lab.classifier import run_classifier
from reglab.lab.config import TrialConfig
from reglab.lab.datasets import load_data
from reglab.lab.ensemble import run_bagging
from reglab.lab.language import run_language_model
from reglab.lab.regression import run_regression
from reglab.lab.trial import TrialContext, TrialOutcome

__all__ = ["TrialOutcome", "load_data", "run_trial"]

_RUNNERS = {
    "classifier": run_classifier,
    "autoencoder": run_autoencoder,
    "ensemble": run_bagging,
    "regression": run_regression,
    "language": run_language_model,
}


def run_trial(config: TrialConfig, seed: int, context: TrialContext | None = None) -> TrialOutcome:
    """Train the model a grid point's ``config`` describes with ``seed``.

    Deterministic on CPU for a given config and seed (initialisation, batch order, dropout and
    noise all derive from ``seed``). ``config.kind`` picks the trial: a classifier (default),
    an autoencoder, a bagged ensemble, a linear regression or a language model.
    """
    return _RUNNERS[config.kind](config, seed, context or TrialContext())
