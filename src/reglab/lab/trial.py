"""What every kind of trial shares: its outcome, regularizers, training run and weight
statistics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import reglab
from reglab.constraints import NormBound
from reglab.training import Callback, History, fit

__all__ = [
    "EpochProgress",
    "TrialOutcome",
    "grid_regularizers",
    "history_rows",
    "kernel_stats",
    "kernels",
    "make_optimizer",
    "train_model",
]


@dataclass
class TrialOutcome:
    """Final metrics (floats), per-epoch history, and the trained model."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    model: nn.Module
    reliability: dict[str, list[float]] | None = None  # test-set bins: count, confidence, acc


class EpochProgress(Callback):
    def __init__(self, report: Callable[[int, int], None], epochs: int) -> None:
        self.report, self.epochs = report, epochs

    def on_epoch_end(self, state: Any) -> None:
        self.report(state.epoch + 1, self.epochs)


def make_optimizer(model: nn.Module, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    if train_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=float(train_cfg["lr"]), momentum=float(train_cfg["momentum"])
        )
    return torch.optim.Adam(model.parameters(), lr=float(train_cfg["lr"]))


def kernels(model: nn.Module) -> list[torch.Tensor]:
    """The model's kernels: parameters named ``weight*`` with at least 2 dimensions."""
    return [
        p
        for n, p in model.named_parameters()
        if n.split(".")[-1].startswith("weight") and p.ndim >= 2
    ]


def grid_regularizers(config: dict[str, Any], module: nn.Module) -> list[Any]:
    """The grid point's ``rules`` attached to ``module`` and its ``norm_bound`` (a
    ``NormBound`` over all of ``module``'s kernels together)."""
    regularizers: list[Any] = []
    if config.get("rules"):
        regularizers.append(reglab.attach(module, config["rules"]))
    if config.get("norm_bound"):
        bound = config["norm_bound"]
        regularizers.append(
            NormBound(
                kernels(module), float(bound["max_norm"]), lr_dual=float(bound.get("lr_dual", 0.1))
            )
        )
    return regularizers


def train_model(
    model: nn.Module,
    train: Any,
    monitor: Any,
    config: dict[str, Any],
    seed: int,
    epoch_callback: Callable[[int, int], None] | None,
    *,
    regularizers: Sequence[Any] = (),
    callbacks: Sequence[Callback] = (),
    **fit_kwargs: Any,
) -> tuple[History, float]:
    """``fit`` with the grid point's ``[train]`` settings (optimizer, lr,
    epochs, batch size) and ``seed``; returns the history and the training seconds. The
    regularizers' hooks are removed afterwards, so evaluation records no activity."""
    train_cfg = config["train"]
    callbacks = list(callbacks)
    if epoch_callback is not None:
        callbacks.append(EpochProgress(epoch_callback, int(train_cfg["epochs"])))
    start = time.perf_counter()
    history = fit(
        model,
        train,
        monitor,
        optimizer=make_optimizer(model, train_cfg),
        epochs=int(train_cfg["epochs"]),
        regularization=list(regularizers),
        callbacks=callbacks,
        batch_size=int(train_cfg["batch_size"]),
        seed=seed,
        progress=False,
        **fit_kwargs,
    )
    seconds = time.perf_counter() - start
    for reg in regularizers:
        if hasattr(reg, "remove"):
            reg.remove()
    return history, seconds


def history_rows(history: Any) -> list[dict[str, float]]:
    """Per-epoch logs as plain floats, without the per-term penalty columns (kept small: they
    are stored in the Optuna storage)."""
    return [
        {k: float(v) for k, v in epoch.items() if not k.startswith("penalty/")}
        for epoch in history.epochs
    ]


def kernel_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm of all kernels together, the largest norm of one unit's incoming weights (what
    MaxNorm bounds), and the share of kernel entries with |w| < 1e-3."""
    with torch.no_grad():
        weights = kernels(model)
        count = sum(p.numel() for p in weights)
        return {
            "weight_norm": math.sqrt(sum(float(p.square().sum()) for p in weights)),
            "max_unit_norm": max(float(p.flatten(1).norm(dim=1).max()) for p in weights),
            "weight_small_frac": sum(int((p.abs() < 1e-3).sum()) for p in weights) / count,
        }
