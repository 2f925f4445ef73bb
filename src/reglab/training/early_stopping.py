"""Early stopping with Keras 3 semantics, plus Prechelt's (1998) GL, PQ and UP criteria."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from reglab._validation import (
    InvalidParameterError,
    check_choice,
    check_coefficient,
    check_positive_int,
    invalid,
)
from reglab.training.callbacks import Callback, TrainState

__all__ = ["EarlyStopping"]

CRITERIA = ("patience", "gl", "pq", "up")
_MAXIMIZED = (
    "acc",
    "accuracy",
    "auc",
    "f1",
    "f1_score",
    "fbeta_score",
    "precision",
    "recall",
    "iou",
    "r2",
    "r2_score",
)


def _infer_mode(monitor: str) -> str:
    name = monitor.removeprefix("val_")
    if name.endswith("loss") or "error" in name or name in ("nll", "ece", "mse", "mae"):
        return "min"
    if any(name == m or name.endswith(m) for m in _MAXIMIZED):
        return "max"
    raise InvalidParameterError(
        f"EarlyStopping cannot tell whether {monitor!r} should be minimised or maximised. "
        "Pass mode='min' or mode='max'."
    )


class EarlyStopping(Callback):
    """Stop training when a monitored metric stops improving; optionally restore the best weights.

    **Patience (default, Keras 3's exact rules).** Each epoch (from ``start_from_epoch`` on)
    the counter ``wait`` increases; the value *improves* when it beats the best so far by more
    than ``|min_delta|`` (``current + |min_delta| < best`` in ``"min"`` mode), which records it
    as best and resets ``wait`` — unless a ``baseline`` is set and not beaten. Training stops
    when ``wait >= patience`` at a non-improving epoch > 0. Warm-up epochs never count as best.
    With ``restore_best_weights`` the weights of the best epoch are restored at the end of
    training whenever they exist (stopped early or not); the first monitored epoch's weights
    serve when nothing improved.

    **Prechelt's criteria** (``criterion=``, "Early stopping — but when?", 1998). With ``E_va``
    the monitored validation error, ``E_opt`` its minimum so far and ``E_tr`` the training
    error (``train_monitor``), over strips of ``strip_length`` = k epochs:

    * ``"gl"``: stop when the generalization loss ``GL = 100 · (E_va / E_opt − 1) > alpha``.
    * ``"pq"``: at the end of each strip, with training progress
      ``P_k = 1000 · (Σ_strip E_tr / (k · min_strip E_tr) − 1)``, stop when
      ``GL / P_k > alpha``.
    * ``"up"``: stop when ``E_va`` was higher at the end of ``successive_strips`` successive
      strips than at the end of the strip before each.

    These need ``mode="min"`` (errors).

    **Lightning's guards**, checked first each monitored epoch, in Lightning's order:
    ``check_finite`` (default True, as Lightning) stops at a NaN or infinite value (also during
    ``start_from_epoch`` warm-up: training on from NaN is never useful); ``stopping_threshold``
    stops once the value is better than it (``value < threshold`` in ``"min"`` mode: the goal
    is reached); ``divergence_threshold`` stops once the value is worse than it. None of these
    records the value as best.

    **A missing value** (the logs of ``fit`` lack ``monitor``): a warning naming the logged
    metrics, and the epoch is skipped, as Keras does; ``strict=True`` raises instead (as
    Lightning's default).

    Args:
        monitor: logged key to watch. Default ``"val_loss"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (losses/errors minimised, accuracies maximised).
        patience: epochs without improvement before stopping (``"patience"`` criterion).
        min_delta: minimum change that counts as improvement (sign ignored).
        baseline: a value the metric must beat before ``wait`` resets.
        restore_best_weights: restore the best epoch's ``state_dict`` at the end of training.
        start_from_epoch: warm-up epochs that are not monitored.
        criterion: ``"patience"``, ``"gl"``, ``"pq"`` or ``"up"``.
        alpha: threshold of ``"gl"`` / ``"pq"``.
        strip_length: k, for ``"pq"`` and ``"up"``. Default 5.
        successive_strips: s, for ``"up"``.
        train_monitor: logged training error for ``"pq"``. Default ``"loss"``.
        check_finite: stop when the monitored value is NaN or infinite.
        stopping_threshold: stop as soon as the value is better than this.
        divergence_threshold: stop as soon as the value is worse than this.
        strict: raise when ``fit``'s logs lack ``monitor`` (default: warn and skip the epoch).

    Attributes:
        best: the best monitored value so far.
        best_epoch: its epoch.
        stopped_epoch: the epoch training stopped at (0 when it never stopped, as Keras).
        reason: why it stopped, or None.
        wait: epochs since the last improvement.

    >>> stopper = EarlyStopping(patience=2)
    >>> tuple(stopper.update(v, epoch) for epoch, v in enumerate([6, 5, 5, 5, 5]))
    (False, False, False, True, True)
    >>> stopper.stopped_epoch, stopper.best, stopper.best_epoch
    (3, 5.0, 1)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        *,
        criterion: str = "patience",
        alpha: float | None = None,
        strip_length: int = 5,
        successive_strips: int | None = None,
        train_monitor: str = "loss",
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        strict: bool = False,
    ) -> None:
        owner = "EarlyStopping"
        self.check_finite = bool(check_finite)
        self.strict = bool(strict)
        for name, value in (
            ("stopping_threshold", stopping_threshold),
            ("divergence_threshold", divergence_threshold),
        ):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise invalid(name, owner, "None or a finite number", value)
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.monitor = monitor
        mode = check_choice(mode, "mode", owner, ("auto", "min", "max"))
        self.mode = _infer_mode(monitor) if mode == "auto" else mode
        self.patience = check_positive_int(patience, "patience", owner, minimum=0)
        self.min_delta = abs(float(min_delta))
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_positive_int(start_from_epoch, "start_from_epoch", owner, 0)
        self.criterion = check_choice(criterion, "criterion", owner, CRITERIA)
        self.strip_length = check_positive_int(strip_length, "strip_length", owner)
        self.train_monitor = train_monitor
        self.alpha = None if alpha is None else check_coefficient(alpha, "alpha", owner)
        self.successive_strips = successive_strips
        if self.criterion in ("gl", "pq") and self.alpha is None:
            raise invalid("alpha", owner, f"a number >= 0 with criterion={criterion!r}", alpha)
        if self.criterion == "up":
            self.successive_strips = check_positive_int(
                successive_strips, "successive_strips", owner
            )
        if self.criterion != "patience" and self.mode != "min":
            raise invalid(
                "mode", owner, f"'min' (an error) with criterion={criterion!r}", self.mode
            )
        self.reset()

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything seen (called at the start of training, as Keras does)."""
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.reason: str | None = None
        self._values: list[float] = []  # monitored values since warm-up, for Prechelt
        self._train_values: list[float] = []
        self._ups = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume monitoring (best weights included)."""
        return {
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "reason": self.reason,
            "values": list(self._values),
            "train_values": list(self._train_values),
            "ups": self._ups,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.best_weights, self.reason = state["best_weights"], state["reason"]
        self._values, self._train_values = list(state["values"]), list(state["train_values"])
        self._ups = state["ups"]

    # -- the decision ------------------------------------------------------------------------
    def _beats(self, value: float, reference: float | None, delta: float | None = None) -> bool:
        if reference is None:
            return True
        delta = self.min_delta if delta is None else delta
        if self.mode == "min":
            return value + delta < reference
        return value - delta > reference

    def _snapshot(self, model: nn.Module | None) -> None:
        if model is None:
            raise InvalidParameterError(
                "EarlyStopping(restore_best_weights=True) needs the model: call "
                "update(value, epoch, model=model)."
            )
        self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(
        self,
        value: float,
        epoch: int,
        model: nn.Module | None = None,
        train_value: float | None = None,
    ) -> bool:
        """Record the monitored ``value`` at the end of ``epoch``; return True to stop now.

        ``model`` is needed with ``restore_best_weights``; ``train_value`` (the training error)
        with ``criterion="pq"``.
        """
        value = float(value)
        if self.check_finite and not math.isfinite(value):
            previous = "none" if self.best is None else f"{self.best:.6g}"
            return self._stop(
                epoch, f"{self.monitor} = {value} is not finite; previous best {previous}"
            )
        if epoch < self.start_from_epoch:
            return False
        reason = self._threshold(value)
        if reason is not None:
            return self._stop(epoch, reason)
        if self.restore_best_weights and self.best_weights is None:
            self._snapshot(model)
            self.best_epoch = epoch
        self._values.append(value)
        if train_value is not None:
            self._train_values.append(float(train_value))
        self.wait += 1
        improved = self._beats(value, self.best)
        if improved:
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self._snapshot(model)
            if self.baseline is None or self._beats(value, self.baseline):
                self.wait = 0
        reason = self._criterion(value, epoch, improved)
        return reason is not None and self._stop(epoch, reason)

    def _stop(self, epoch: int, reason: str) -> bool:
        if self.reason is None:
            self.stopped_epoch, self.reason = epoch, reason
        return True

    def _threshold(self, value: float) -> str | None:
        """Lightning's ``stopping_threshold`` and ``divergence_threshold`` (strict comparisons)."""
        better = "<" if self.mode == "min" else ">"
        worse = ">" if self.mode == "min" else "<"
        if self.stopping_threshold is not None and self._beats(value, self.stopping_threshold, 0):
            return (
                f"{self.monitor} = {value:.6g} {better} stopping_threshold "
                f"{self.stopping_threshold}"
            )
        if self.divergence_threshold is not None and self._beats(
            self.divergence_threshold, value, 0
        ):
            return (
                f"{self.monitor} = {value:.6g} {worse} divergence_threshold "
                f"{self.divergence_threshold}"
            )
        return None

    def _criterion(self, value: float, epoch: int, improved: bool) -> str | None:
        if self.criterion == "patience":
            if not improved and self.wait >= self.patience and epoch > 0:
                return (
                    f"{self.monitor} did not improve for {self.wait} epochs "
                    f"(patience {self.patience}); best {self.best:.6g} at epoch "
                    f"{self.best_epoch}"
                )
            return None
        e_opt = min(self._values)
        gl = 100.0 * (value / e_opt - 1.0) if e_opt > 0 else 0.0
        if self.criterion == "gl":
            return f"GL = {gl:.3g} > alpha = {self.alpha}" if gl > self.alpha else None
        k = self.strip_length
        if len(self._values) % k != 0:  # PQ and UP are only evaluated at the end of a strip
            return None
        if self.criterion == "pq":
            if len(self._train_values) < k:
                raise InvalidParameterError(
                    "EarlyStopping(criterion='pq') needs the training error each epoch: pass "
                    f"train_value= to update() or log {self.train_monitor!r}."
                )
            strip = self._train_values[-k:]
            progress = 1000.0 * (sum(strip) / (k * min(strip)) - 1.0)
            quotient = gl / progress if progress > 0 else (math.inf if gl > 0 else 0.0)
            if quotient > self.alpha:
                return f"PQ = GL / P_{k} = {gl:.3g} / {progress:.3g} > alpha = {self.alpha}"
            return None
        # "up": compare with the end of the previous strip.
        if len(self._values) > k and value > self._values[-1 - k]:
            self._ups += 1
        else:
            self._ups = 0
        if self._ups >= self.successive_strips:
            return f"{self.monitor} rose in {self._ups} successive strips of {k} epochs (UP)"
        return None

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights into ``model`` if any were recorded; return whether it did."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True

    # -- as a fit() callback -----------------------------------------------------------------
    def on_train_begin(self, state: TrainState) -> None:
        self.reset()

    def on_epoch_end(self, state: TrainState) -> None:
        if self.monitor not in state.logs:
            message = (
                f"EarlyStopping monitors {self.monitor!r}, which was not logged. Available "
                f"metrics: {', '.join(state.logs)}. (val_* metrics need val data in fit.)"
            )
            if self.strict:
                raise InvalidParameterError(message)
            warnings.warn(f"{message} Epoch {state.epoch} skipped.", stacklevel=2)
            return
        train_value = state.logs.get(self.train_monitor)
        if self.update(state.logs[self.monitor], state.epoch, state.model, train_value):
            state.stop, state.stop_reason = True, self.reason

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best_weights:
            self.restore(state.model)

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, "
            f"criterion={self.criterion!r}, patience={self.patience})"
        )
