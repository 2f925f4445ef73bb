"""Callbacks: hooks that ``fit`` calls, and the training state they see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reglab.training.history import History

__all__ = ["Callback", "TrainState"]


@dataclass
class TrainState:
    """Mutable state shared with callbacks during ``fit``.

    A callback stops training by setting ``stop = True`` (and ``stop_reason``); ``fit`` ends
    after the current epoch. ``batch_logs`` holds the last step's detached values (``loss``,
    ``penalty``, ``penalty/<term>``) for per-step loggers; ``regularizers`` the objects whose
    ``penalty()`` is added to the loss.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    epoch: int = 0
    step: int = 0
    logs: dict[str, float] = field(default_factory=dict)
    stop: bool = False
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    batch_logs: dict[str, torch.Tensor] = field(default_factory=dict)
    regularizers: list[Any] = field(default_factory=list)


class Callback:
    """Base class of training callbacks; every hook is a no-op.

    Hooks, in order: ``on_train_begin``, then per epoch ``on_epoch_begin``, ``on_batch_end``
    (after each optimizer step), ``on_epoch_end`` (``state.logs`` holds the epoch's metrics),
    and finally ``on_train_end`` (also after an early stop).
    """

    def on_train_begin(self, state: TrainState) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """Before each epoch."""

    def on_batch_end(self, state: TrainState) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch's training and validation; may set ``state.stop``."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch."""
