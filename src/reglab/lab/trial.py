"""What every kind of trial shares: its outcome, progress, optimizer and weight statistics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reglab.training import Callback

__all__ = ["EpochProgress", "TrialOutcome", "history_rows", "kernel_stats", "make_optimizer"]


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
        kernels = [
            p
            for n, p in model.named_parameters()
            if n.split(".")[-1].startswith("weight") and p.ndim >= 2
        ]
        count = sum(p.numel() for p in kernels)
        return {
            "weight_norm": math.sqrt(sum(float(p.square().sum()) for p in kernels)),
            "max_unit_norm": max(float(p.flatten(1).norm(dim=1).max()) for p in kernels),
            "weight_small_frac": sum(int((p.abs() < 1e-3).sum()) for p in kernels) / count,
        }
