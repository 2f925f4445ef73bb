"""Train one grid point with one seed: the kind registry picks the runner."""

from __future__ import annotations

from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import load_data
from reglab.lab.work.init import remember
from reglab.lab.work.training import TrialContext, TrialOutcome

__all__ = ["TrialOutcome", "load_data", "run_trial"]


def run_trial(config: TrialConfig, seed: int, context: TrialContext | None = None) -> TrialOutcome:
    """Train the model a grid point's ``config`` describes with ``seed``.

    Deterministic on CPU for a given config and seed (initialisation, batch order, dropout and
    noise all derive from ``seed``). The registered kind of ``[model] kind`` trains it
    (:mod:`reglab.lab.settings.registry`): a classifier (default; bagged when the point has
    ``ensemble``), an autoencoder, a linear regression or a language model.
    """
    context = context or TrialContext()
    outcome = config.model_kind.run(config, seed, context)
    remember(config, seed, outcome.model, context.device)  # when another point starts from it
    return outcome
