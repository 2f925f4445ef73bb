"""Weight averaging callbacks (SWA, EMA): thin wrappers over ``torch.optim.swa_utils``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from reglab._validation import check_coefficient, check_positive_int, invalid
from reglab.training import Callback, TrainState

__all__ = ["EMA", "SWA"]


class SWA(Callback):
    """Stochastic weight averaging (Izmailov et al. 2018) as a ``fit`` callback.

    From epoch ``swa_start`` on, the weights at the end of every epoch are added to an equal
    average (``AveragedModel``); with ``swa_lr`` the learning rate is annealed to it by
    ``SWALR``. At the end of training, BatchNorm statistics are recomputed on ``bn_data``
    (``update_bn``) and, with ``apply_at_end``, the averaged weights are copied into the model.

    Attributes:
        averaged: the ``AveragedModel`` (after ``on_train_begin``).
    """

    def __init__(
        self,
        swa_start: int = 0,
        swa_lr: float | None = None,
        bn_data: torch.Tensor | Iterable[Any] | None = None,
        apply_at_end: bool = True,
    ) -> None:
        self.swa_start = check_positive_int(swa_start, "swa_start", "SWA", minimum=0)
        self.swa_lr = None if swa_lr is None else check_coefficient(swa_lr, "swa_lr", "SWA")
        self.bn_data = bn_data
        self.apply_at_end = apply_at_end
        self.averaged: AveragedModel | None = None
        self._scheduler: SWALR | None = None

    def on_train_begin(self, state: TrainState) -> None:
        self.averaged = AveragedModel(state.model)
        if self.swa_lr is not None:
            self._scheduler = SWALR(state.optimizer, swa_lr=self.swa_lr)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch >= self.swa_start:
            self.averaged.update_parameters(state.model)
            if self._scheduler is not None:
                self._scheduler.step()

    def on_train_end(self, state: TrainState) -> None:
        if int(self.averaged.n_averaged) == 0:
            return  # training ended before swa_start: nothing was averaged
        if self.bn_data is not None:
            batches = (
                self.bn_data.split(256) if isinstance(self.bn_data, torch.Tensor) else self.bn_data
            )
            update_bn(batches, self.averaged, device=next(state.model.parameters()).device)
        if self.apply_at_end:
            state.model.load_state_dict(self.averaged.module.state_dict())


class EMA(Callback):
    """Exponential moving average of the weights after every optimizer step.

    ``ema ← decay · ema + (1 − decay) · θ`` (the first step copies θ), via ``AveragedModel``
    with ``get_ema_multi_avg_fn``; buffers are averaged too (``use_buffers=True``). With
    ``apply_at_end`` the average replaces the model's weights when training ends.

    Attributes:
        averaged: the ``AveragedModel`` (after ``on_train_begin``).
    """

    def __init__(self, decay: float = 0.999, apply_at_end: bool = True) -> None:
        decay = check_coefficient(decay, "decay", "EMA")
        if not 0.0 < decay < 1.0:
            raise invalid("decay", "EMA", "a number in (0, 1)", decay)
        self.decay = decay
        self.apply_at_end = apply_at_end
        self.averaged: AveragedModel | None = None

    def on_train_begin(self, state: TrainState) -> None:
        self.averaged = AveragedModel(
            state.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
        )

    def on_batch_end(self, state: TrainState) -> None:
        self.averaged.update_parameters(state.model)

    def on_train_end(self, state: TrainState) -> None:
        if self.apply_at_end and int(self.averaged.n_averaged) > 0:
            state.model.load_state_dict(self.averaged.module.state_dict())
