"""One trial: train a classifier with a set of attach rules and measure what happened."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import reglab

__all__ = ["TrialResult", "train_classifier"]

Rules = Mapping[Any, Mapping[str, Any]]


@dataclass(frozen=True)
class TrialResult:
    """Final metrics of one trained classifier (accuracies in [0, 1])."""

    train_accuracy: float
    test_accuracy: float
    zero_fraction: float  # exactly-zero entries of the hidden codes on the test set
    weight_norm: float  # L2 norm of all kernels (Linear weights) together
    seconds: float

    @property
    def gap(self) -> float:
        """Generalization gap: train accuracy minus test accuracy."""
        return self.train_accuracy - self.test_accuracy


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, codes: list[nn.Module]
) -> tuple[float, float]:
    """Accuracy, and the fraction of exact zeros in the outputs of ``codes`` modules."""
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, o: outputs.append(o)) for m in codes]
    try:
        model.eval()
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    finally:
        for h in handles:
            h.remove()
        model.train()
    zeros = sum(int((o == 0).sum()) for o in outputs)
    total = sum(o.numel() for o in outputs)
    return accuracy, zeros / total if total else 0.0


def train_classifier(
    model_fn: Callable[[], nn.Module],
    rules: Rules | None,
    data: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    *,
    seed: int,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    code_modules: str = "act",
) -> TrialResult:
    """Train ``model_fn()`` with Adam and cross-entropy plus ``rules`` attached via
    :func:`reglab.attach`; return train/test accuracy, hidden-code sparsity and weight norm.

    ``seed`` fixes initialisation and batch order, so a trial is reproducible on CPU.
    Hidden codes are the outputs of modules whose name starts with ``code_modules``.
    """
    (x, y), (x_test, y_test) = data
    torch.manual_seed(seed)
    model = model_fn()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    reg = reglab.attach(model, rules) if rules else None
    if reg is not None:
        reg.bind(optimizer)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for idx in order.split(batch_size):  # index slicing, no per-sample collation
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if reg is not None:
                loss = loss + reg.penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    if reg is not None:
        reg.remove()
    codes = [m for name, m in model.named_modules() if name.startswith(code_modules)]
    train_acc, _ = _evaluate(model, x, y, codes)
    test_acc, zeros = _evaluate(model, x_test, y_test, codes)
    with torch.no_grad():
        kernels = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim >= 2]
        norm = torch.sqrt(sum(p.square().sum() for p in kernels)).item()
    return TrialResult(train_acc, test_acc, zeros, norm, seconds)
