"""``method = "tpe"``: :class:`optuna.samplers.TPESampler` with ``constant_liar=True`` (a
running trial counts as a bad one, so parallel workers spread out) and ``multivariate=True``
(penalty coefficients interact: a joint density finds a ridge that independent ones miss).
With several objectives the same sampler is Optuna's multi-objective TPE. Rebuilt per trial
from ``(seed, trial number)`` (:mod:`~reglab.lab.search._per_trial`): workers sharing the
study's seed do not repeat each other's start-up trials.
"""

from __future__ import annotations

import warnings

import optuna

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search._per_trial import PerTrialSeed
from reglab.lab.search.settings import SearchSettings

__all__ = ["TPE"]


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate / constant_liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)


@register
class TPE(SearchMethod):
    name = "tpe"

    def sampler(self, settings: SearchSettings) -> optuna.samplers.BaseSampler:
        return PerTrialSeed(_tpe, settings.seed)
