"""Hugging Face ``transformers``: a ``Trainer`` that adds reglab's penalties to the loss.

>>> trainer = RegularizedTrainer(model=model, args=args, train_dataset=data,
...                              regularization={"*.intermediate.dense": dict(kernel=L2(1e-4))})
... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reglab._optional import require
from reglab.regularization import attach
from reglab.regularization.rules import RuleKey

transformers = require("transformers", "reglab.integrations.transformers")

__all__ = ["RegularizedTrainer"]


class _Constraints(transformers.TrainerCallback):  # type: ignore[misc]
    """Projects the constraints right after every optimizer step."""

    def __init__(self, trainer: RegularizedTrainer) -> None:
        self.trainer = trainer

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.regularization.apply_constraints()


class RegularizedTrainer(transformers.Trainer):  # type: ignore[misc]
    """``transformers.Trainer`` with ``reglab.attach`` rules on its model.

    * **The loss**: every training forward's penalty is added to the loss
      ``compute_loss`` returns, scaled so that it counts **once per optimizer step** whatever
      the gradient accumulation: the Trainer divides a per-batch-mean loss by the number of
      accumulation steps itself, but not a loss it normalised over the whole accumulated batch
      (a model that takes ``num_items_in_batch``, or a ``compute_loss_func``) — then the
      penalty is divided here. Evaluation losses are the data loss alone.
    * **Logging**: each term's mean over the steps since the last log, as
      ``penalty/<term>`` next to ``loss`` (and with ``log_statistics``, the last step's output
      sparsity and projected units: ``reglab.Regularization.statistics``).
    * **Constraints** are projected after every optimizer step (a callback's
      ``on_optimizer_step``).
    * ``fold=True`` adds the weight penalties inside the optimizer step instead
      (``reglab.Regularization.fold_into``).

    Args:
        *args: those of ``transformers.Trainer`` (a ``model`` is required; with
            ``model_init``, attach in your own subclass).
        regularization: ``reglab.attach`` rules for ``model``.
        activity_reduction: as for ``reglab.attach``.
        fold: fold the weight penalties into the optimizer.
        log_statistics: also log ``statistics``.
        **kwargs: those of ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        regularization: Mapping[RuleKey, Mapping[str, Any]],
        activity_reduction: str = "batch",
        fold: bool = False,
        log_statistics: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.regularization = attach(
            self.model, regularization, activity_reduction=activity_reduction
        )
        self.regularization.monitoring = log_statistics
        self._fold = fold
        self._sums: dict[str, torch.Tensor] = {}
        self._counted = 0
        self.add_callback(_Constraints(self))

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        if self._fold and self.regularization._folded is None:
            self.regularization.fold_into(optimizer)
        return optimizer

    def _scaled_for_accumulation(self, num_items_in_batch: Any) -> bool:
        """Whether the Trainer will *not* divide this loss by the accumulation steps."""
        known = getattr(self, "loss_is_scaled_for_ga", None)
        if known is not None:
            return bool(known)
        return (
            self.model_accepts_loss_kwargs and num_items_in_batch is not None
        ) or self.compute_loss_func is not None

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if not model.training:
            return result
        loss, outputs = result if return_outputs else (result, None)
        penalty = self.regularization.penalty()
        if self._scaled_for_accumulation(num_items_in_batch):
            steps = getattr(self, "current_gradient_accumulation_steps", None)
            penalty = penalty / (steps or self.args.gradient_accumulation_steps)
        self._remember(self.regularization.terms())
        loss = loss + penalty.to(loss.dtype)
        return (loss, outputs) if return_outputs else loss

    def _remember(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().double()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self._counted += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._counted:  # a training log: add the terms' means
            for key, total in self._sums.items():
                logs[f"penalty/{key}"] = float(total) / self._counted
            self._sums, self._counted = {}, 0
            logs.update({k: float(v) for k, v in self.regularization.statistics().items()})
        super().log(logs, *args, **kwargs)
