"""Training curves and regularization terms in TensorBoard, from ``fit``."""

from __future__ import annotations

import os
from typing import Any

from reglab._optional import require
from reglab._validation import check_positive_int
from reglab.training.callbacks import Callback, TrainState

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Write what ``fit`` logs to TensorBoard event files (``torch.utils.tensorboard``).

    * every ``every`` steps, under ``step/``: the data ``loss``, the total ``penalty`` and each
      ``penalty/<term>``; and ``reglab.Regularization.statistics`` of every attached
      regularization — the fraction of exactly-zero entries of each penalised output
      (``sparsity/<module>``) and how many units each constraint projected
      (``projected/<parameter>``). (This callback turns ``monitoring`` on.)
    * every epoch, under ``epoch/``: everything ``fit`` logs (``loss``, ``val_*``, metrics,
      ``penalty/<term>`` means, ``step_time``).

    Open with ``tensorboard --logdir DIR``. Needs the ``tensorboard`` extra.

    Args:
        log_dir: the event files' directory.
        every: steps between per-step records (values are read from the device then: a
            sync on accelerators).
    """

    def __init__(self, log_dir: str | os.PathLike[str], every: int = 1) -> None:
        self.log_dir = os.fspath(log_dir)
        self.every = check_positive_int(every, "every", "TensorBoard")
        self.writer: Any = None

    def on_train_begin(self, state: TrainState) -> None:
        require("tensorboard", "reglab.training.TensorBoard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(self.log_dir)
        for r in state.regularizers:
            if hasattr(r, "monitoring"):
                r.monitoring = True

    def on_batch_end(self, state: TrainState) -> None:
        if state.step % self.every:
            return
        values = dict(state.batch_logs)
        for r in state.regularizers:
            values.update(getattr(r, "statistics", dict)())
        for key, value in values.items():
            self.writer.add_scalar(f"step/{key}", float(value), state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        for key, value in state.logs.items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, state.epoch)
        self.writer.flush()

    def on_train_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
