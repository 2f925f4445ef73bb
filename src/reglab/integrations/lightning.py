"""PyTorch Lightning: regularization as one callback, and reglab's early-stopping criteria.

>>> trainer = lightning.Trainer(callbacks=[Regularize({nn.Linear: dict(kernel=L2(1e-4))})])
... # doctest: +SKIP

Works with ``lightning`` (``lightning.pytorch``) and the older ``pytorch_lightning`` package.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import torch

from reglab._optional import require
from reglab.regularization import Regularization, attach
from reglab.regularization.rules import RuleKey
from reglab.training.early_stopping import EarlyStopping as _Stopper

if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning"):
    pl = require("pytorch_lightning", "reglab.integrations.lightning")
else:
    pl = require("lightning.pytorch", "reglab.integrations.lightning")

__all__ = ["EarlyStopping", "Regularize"]


class Regularize(pl.Callback):  # type: ignore[misc, name-defined]
    """Attach ``rules`` to the LightningModule for the duration of ``trainer.fit``.

    * **fit start**: ``reglab.attach(pl_module, rules)`` (globs are over the LightningModule's
      ``named_modules()``, e.g. ``"model.fc*"`` for a network stored as ``self.model``), and
      the constraints are bound to every optimizer (projected after each ``step()``).
    * **each training step**: the penalty is added to the loss ``training_step`` returns (a
      tensor, or a dict's ``"loss"``). Lightning divides that loss by
      ``accumulate_grad_batches``, so with gradient accumulation the penalty counts once per
      optimizer step, like the data loss. Each term is logged with the module's logger as
      ``penalty/<term>`` (step and epoch means); with ``log_statistics`` also the fraction of
      exactly-zero penalised outputs and the units each constraint projected.
    * **fit end**: every hook is removed and ``training_step`` is restored.

    With manual optimization (``automatic_optimization = False``), add
    ``self.trainer``'s ``Regularize.regularization.penalty()`` to your loss yourself.

    Args:
        rules: ``reglab.attach`` rules.
        activity_reduction: as for ``reglab.attach``.
        fold: add the weight penalties inside the (first) optimizer's step instead
            (``fold_into``).
        log: log the terms (``self.log`` with ``on_step`` and ``on_epoch``).
        log_statistics: log output sparsity and constraint activity too.
    """

    def __init__(
        self,
        rules: Mapping[RuleKey, Mapping[str, Any]],
        *,
        activity_reduction: str = "batch",
        fold: bool = False,
        log: bool = True,
        log_statistics: bool = False,
    ) -> None:
        self.rules = rules
        self.activity_reduction = activity_reduction
        self.fold = fold
        self.log = log
        self.log_statistics = log_statistics
        self.regularization: Regularization | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        reg = attach(pl_module, self.rules, activity_reduction=self.activity_reduction)
        reg.monitoring = self.log_statistics
        for optimizer in trainer.optimizers:
            reg.bind(optimizer)
        if self.fold:
            reg.fold_into(trainer.optimizers[0])
        self.regularization = reg
        step = pl_module.training_step

        def training_step(*args: Any, **kwargs: Any) -> Any:
            out = step(*args, **kwargs)
            if out is None or not pl_module.automatic_optimization:
                return out
            penalty = reg.penalty()
            if self.log:
                logged = {f"penalty/{k}": v for k, v in reg.terms().items()}
                if self.log_statistics:
                    logged.update(reg.statistics())
                pl_module.log_dict(logged, on_step=True, on_epoch=True)
            if isinstance(out, torch.Tensor):
                return out + penalty
            return {**out, "loss": out["loss"] + penalty}

        pl_module.training_step = training_step  # the instance attribute shadows the method

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.teardown(trainer, pl_module, "fit")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.regularization is not None:
            self.regularization.remove()
            self.regularization = None
        pl_module.__dict__.pop("training_step", None)


class EarlyStopping(pl.Callback):  # type: ignore[misc, name-defined]
    """reglab's ``EarlyStopping`` — Keras' patience rules and Prechelt's
    GL, PQ and UP criteria — as a Lightning callback.

    After each validation run it reads ``monitor`` (and, for ``"pq"``, ``train_monitor``)
    from ``trainer.callback_metrics``, stops training (``trainer.should_stop``) when the
    criterion says so, records why in ``reason``, and with ``restore_best_weights``
    loads the best epoch's weights at the end of ``fit``. Arguments are those of
    ``reglab.training.EarlyStopping``.

    >>> stop = EarlyStopping(monitor="val_loss", criterion="gl", alpha=5.0)  # doctest: +SKIP
    """

    def __init__(self, monitor: str = "val_loss", **kwargs: Any) -> None:
        self.stopper = _Stopper(monitor, **kwargs)

    @property
    def reason(self) -> str | None:
        return self.stopper.reason

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.stopper.reset()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        monitor = self.stopper.monitor
        if monitor not in metrics:
            raise KeyError(
                f"EarlyStopping monitors {monitor!r}, which was not logged. Logged: "
                f"{', '.join(sorted(metrics))}."
            )
        train = metrics.get(self.stopper.train_monitor)
        stop = self.stopper.update(
            float(metrics[monitor]),
            trainer.current_epoch,
            model=pl_module,
            train_value=None if train is None else float(train),
        )
        trainer.should_stop = trainer.should_stop or stop

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.stopper.restore_best_weights:
            self.stopper.restore(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return self.stopper.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopper.load_state_dict(state_dict)
