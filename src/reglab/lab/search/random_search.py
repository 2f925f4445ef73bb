"""``method = "random"``: :class:`optuna.samplers.RandomSampler`, rebuilt per trial from
``(seed, trial number)`` (:mod:`~reglab.lab.search._per_trial`): workers sharing the study's
seed do not draw the same sequence."""

from __future__ import annotations

import optuna

from reglab.lab.search._base import SearchMethod, register
from reglab.lab.search._per_trial import PerTrialSeed
from reglab.lab.search.settings import SearchSettings

__all__ = ["RandomSearch"]


@register
class RandomSearch(SearchMethod):
    name = "random"

    def sampler(self, settings: SearchSettings) -> optuna.samplers.BaseSampler:
        return PerTrialSeed(lambda seed: optuna.samplers.RandomSampler(seed=seed), settings.seed)
