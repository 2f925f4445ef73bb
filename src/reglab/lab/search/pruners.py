"""``pruner = "none" | "median" | "asha" | "hyperband"``: Optuna's pruners, by name.

Trials report their validation metric once per epoch (``step`` = epochs done); a pruner
compares a trial's curve with the others' at the same step:

* ``"median"``: :class:`optuna.pruners.MedianPruner` — stop when the best value so far is
  worse than the median of the other trials at this step (after 5 complete trials and 1 epoch).
* ``"asha"``: :class:`optuna.pruners.SuccessiveHalvingPruner` — asynchronous successive
  halving: rungs at ``min_resource · 4^r`` epochs, keep the best quarter at each rung.
* ``"hyperband"``: :class:`optuna.pruners.HyperbandPruner` — several successive-halving
  brackets, ``max_resource`` the study's epochs.
* ``"none"``: :class:`optuna.pruners.NopPruner`.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from reglab.lab.settings.schema import fail

__all__ = ["PRUNER_FACTORIES", "make_pruner"]


def _median(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def _asha(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)


def _hyperband(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))


def _none(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


#: name -> ``factory(epochs) -> pruner``.
PRUNER_FACTORIES: dict[str, Callable[[int], optuna.pruners.BasePruner]] = {
    "none": _none,
    "median": _median,
    "asha": _asha,
    "hyperband": _hyperband,
}


def make_pruner(name: str, epochs: int, path: str = "search.pruner") -> optuna.pruners.BasePruner:
    """The pruner called ``name`` for trials of ``epochs`` epochs.

    >>> type(make_pruner("asha", epochs=20)).__name__
    'SuccessiveHalvingPruner'
    """
    factory = PRUNER_FACTORIES.get(name)
    if factory is None:
        raise fail(path, f"expected one of {', '.join(PRUNER_FACTORIES)}", name)
    return factory(epochs)
