"""Early-stopping criteria applied after the fact to one logged training run (Prechelt 1998).

Training once for the whole budget and replaying each criterion over the logged validation
curve gives every criterion the *same* run, so their stop epochs and test errors compare
without seed noise between criteria.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reglab._validation import invalid
from reglab.training import EarlyStopping

__all__ = ["CRITERIA", "post_hoc_stopping", "stopping_criteria"]

#: criterion -> the EarlyStopping argument its values set
CRITERIA = {"patience": "patience", "gl": "alpha", "pq": "alpha", "up": "successive_strips"}


def stopping_criteria(settings: Mapping[str, Sequence[float]]) -> dict[str, EarlyStopping]:
    """``{"gl2": EarlyStopping(criterion="gl", alpha=2), ...}`` from ``{"gl": [2], ...}``."""
    stoppers = {}
    for criterion, values in settings.items():
        if criterion not in CRITERIA:
            raise invalid("criterion", "post_hoc_stopping", f"one of {sorted(CRITERIA)}", criterion)
        for value in values if isinstance(values, (list, tuple)) else [values]:
            kwargs: dict[str, Any] = {"monitor": "val_loss", "mode": "min"}
            if criterion == "patience":
                kwargs["patience"] = int(value)
            else:
                kwargs["criterion"] = criterion
                kwargs[CRITERIA[criterion]] = int(value) if criterion == "up" else float(value)
            stoppers[f"{criterion}{value:g}"] = EarlyStopping(**kwargs)
    return stoppers


def post_hoc_stopping(
    history: Sequence[Mapping[str, float]], settings: Mapping[str, Sequence[float]]
) -> dict[str, float]:
    """Replay each criterion over a run's logged ``val_loss`` (and training ``loss``, for PQ).

    ``history`` rows need ``val_loss``, ``loss`` and ``test_acc``. For each criterion ``c``:
    ``stop/c`` is the number of epochs trained when it fires (the whole run if it never does);
    ``test_acc_last/c`` the test accuracy of the weights at that epoch; ``test_acc_best/c``
    that of the weights with the lowest validation loss up to then (restore-best). Also
    ``test_acc_final`` (no stopping) and ``test_acc_oracle`` (the best test accuracy of any
    epoch, which no criterion may look at).

    >>> rows = [{"val_loss": v, "loss": 1.0 / (e + 1), "test_acc": a}
    ...         for e, (v, a) in enumerate([(3, .5), (2, .6), (1, .7), (2, .8), (3, .9)])]
    >>> m = post_hoc_stopping(rows, {"patience": [1]})
    >>> m["stop/patience1"], m["test_acc_last/patience1"], m["test_acc_best/patience1"]
    (4.0, 0.8, 0.7)
    """
    metrics = {
        "test_acc_final": float(history[-1]["test_acc"]),
        "test_acc_oracle": max(float(row["test_acc"]) for row in history),
    }
    for name, stopper in stopping_criteria(settings).items():
        stop = len(history) - 1
        for epoch, row in enumerate(history):
            if stopper.update(row["val_loss"], epoch, train_value=row["loss"]):
                stop = epoch
                break
        seen = history[: stop + 1]
        best = min(range(len(seen)), key=lambda e: seen[e]["val_loss"])
        metrics[f"stop/{name}"] = float(stop + 1)
        metrics[f"test_acc_last/{name}"] = float(history[stop]["test_acc"])
        metrics[f"test_acc_best/{name}"] = float(history[best]["test_acc"])
    return metrics
