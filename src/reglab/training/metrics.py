"""Per-batch metrics for ``fit``: ``metric(output, target) -> 0-dim tensor``."""

from __future__ import annotations

import torch

__all__ = ["accuracy"]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max class equals ``y``; for class-probability targets
    (mixup, CutMix), their arg-max. Shape: ``(N, k)``, ``(N,)`` or ``(N, k)`` -> ()."""
    if y.ndim == logits.ndim:
        y = y.argmax(dim=-1)
    return (logits.argmax(dim=-1) == y).float().mean()
