"""A sampler rebuilt, seeded, for every trial: parallel workers never repeat each other.

Every ``reglab worker`` builds its own sampler from the same ``[search] seed``. Seeded
samplers then draw the same sequence in every process: TPE's random start-up trials and
``RandomSampler`` would hand each worker the same configurations. :class:`PerTrialSeed`
builds the wrapped sampler for each trial with the seed ``(seed, trial.number)`` — trial
numbers are unique in the storage — so a run is reproducible for a given assignment of
numbers and no two trials share a stream. TPE and random samplers keep no state between
trials beyond their random stream (they read the history from the storage), so rebuilding
them changes nothing else; TPE's constant liar still sees the running trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

__all__ = ["PerTrialSeed", "trial_seed"]


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed for trial ``number`` of a search seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(BaseSampler):
    """``build(seed)`` called once per trial with :func:`trial_seed` (see the module)."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._samplers: dict[int, BaseSampler] = {}

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        sampler = self._samplers.get(trial.number)
        if sampler is None:
            sampler = self._samplers[trial.number] = self._build(
                trial_seed(self._seed, trial.number)
            )
        return sampler

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)  # the trial is over: forget its sampler

    def reseed_rng(self) -> None:
        self._samplers.clear()
