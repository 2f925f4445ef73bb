"""``method = "qmc"``: :class:`optuna.samplers.QMCSampler` (scrambled Sobol), seeded;
categorical axes fall back to a seeded random sampler. Sobol points are numbered by a counter
in the storage that is not atomic: two workers asking at the same instant can be given the
same point."""

from __future__ import annotations

import warnings

import optuna

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search.settings import SearchSettings

__all__ = ["QMC"]


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
