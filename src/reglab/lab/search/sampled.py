"""The sampled methods: ``tpe``, ``random`` and ``qmc`` ask Optuna's samplers for ``trials``
configurations.

* ``tpe``: :class:`optuna.samplers.TPESampler` with ``constant_liar=True`` (a running trial
  counts as a bad one, so parallel workers spread out) and ``multivariate=True`` (penalty
  coefficients interact: a joint density finds a ridge that independent ones miss). With
  several objectives the same sampler is Optuna's multi-objective TPE.
* ``random``: :class:`optuna.samplers.RandomSampler`.
* ``qmc``: :class:`optuna.samplers.QMCSampler` (scrambled Sobol); categorical axes fall back to
  a random sampler. Sobol points are numbered in the storage; two workers asking at the same
  instant can be given the same point (Optuna's counter is not atomic).

TPE and random samplers are rebuilt per trial with a seed derived from ``(seed, trial
number)`` (:class:`~reglab.lab.search._per_trial.PerTrialSeed`): workers that share the study's
seed do not repeat each other.
"""

from __future__ import annotations

import warnings

import optuna

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search._per_trial import PerTrialSeed
from reglab.lab.search.settings import SearchSettings

__all__ = ["QMC", "TPE", "RandomSearch"]


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate / constant_liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)


@register
class TPE(SearchMethod):
    name = "tpe"

    def sampler(self, settings: SearchSettings) -> optuna.samplers.BaseSampler:
        return PerTrialSeed(_tpe, settings.seed)


@register
class RandomSearch(SearchMethod):
    name = "random"

    def sampler(self, settings: SearchSettings) -> optuna.samplers.BaseSampler:
        return PerTrialSeed(lambda seed: optuna.samplers.RandomSampler(seed=seed), settings.seed)


@register
class QMC(SearchMethod):
    name = "qmc"

    def sampler(self, settings: SearchSettings) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=settings.seed,
                independent_sampler=optuna.samplers.RandomSampler(seed=settings.seed),
                warn_independent_sampling=False,
            )
