"""Elementwise norm penalties: L1, L2, L1L2 (Keras 3's exact formulas) and ExpAbs."""

from __future__ import annotations

from typing import Any

import torch

from reglab._validation import check_coefficient
from reglab.penalties._base import Penalty, registry

__all__ = ["L1", "L1L2", "L2", "ExpAbs"]

# The fused fast path calls value_and_gradient() once per step on every penalised weight. On
# CPU each fresh parameter-sized allocation costs page faults, so these share one allocation
# (the gradient) and reduce with allocation-free dot products.


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


@registry.register("l1")
class L1(Penalty):
    """L1 penalty ``l1 * sum(|x|)``, as ``keras.regularizers.L1``.

    Drives weights to exactly zero (a sparse solution); on activity it makes codes sparse.
    The gradient is ``l1 * sign(x)`` (0 at 0, like autograd's).

    Args:
        l1: coefficient, a finite number >= 0. Default 0.01 (Keras' default).

    Shape:
        Any tensor; returns a 0-dim tensor.

    >>> L1(0.5)(torch.tensor([1.0, -2.0]))
    tensor(1.5000)
    """

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = check_coefficient(l1, "l1", "L1")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.l1 * x.abs().sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x).mul_(self.l1)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.sign(x)
        return self.l1 * _dot(x, sign), sign.mul_(self.l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


@registry.register("l2")
class L2(Penalty):
    """L2 penalty ``l2 * sum(x**2)`` (no 1/2), as ``keras.regularizers.L2``.

    On a weight this is "weight decay" with rate ``2 * l2 * lr`` under plain SGD (not under Adam,
    where the penalty's gradient is rescaled; use AdamW for decoupled decay).

    Args:
        l2: coefficient, a finite number >= 0. Default 0.01 (Keras' default).

    >>> L2(2.0)(torch.ones(5, 5))
    tensor(50.)
    """

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = check_coefficient(l2, "l2", "L2")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2 * x.square().sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(2.0 * self.l2)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.l2 * _dot(x, x), x.mul(2.0 * self.l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


@registry.register("l1l2", "l1_l2")
class L1L2(Penalty):
    """Elastic-net penalty ``l1 * sum(|x|) + l2 * sum(x**2)``, as ``keras.regularizers.L1L2``.

    Both coefficients default to 0.0, exactly as in Keras 3, so ``L1L2()`` and the strings
    ``"l1l2"`` / ``"l1_l2"`` build a zero penalty (Keras 3's ``get("l1l2")`` does the same).

    >>> L1L2(l1=0.5, l2=0.25)(torch.tensor([1.0, -2.0]))
    tensor(2.7500)
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = check_coefficient(l1, "l1", "L1L2")
        self.l2 = check_coefficient(l2, "l2", "L1L2")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.l1 * x.abs().sum() + self.l2 * x.square().sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        # One allocation: sign(x) * l1 + 2 * l2 * x.
        return torch.sign(x).mul_(self.l1).add_(x, alpha=2.0 * self.l2)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.sign(x)
        value = self.l1 * _dot(x, sign) + self.l2 * _dot(x, x)
        return value, sign.mul_(self.l1).add_(x, alpha=2.0 * self.l2)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


@registry.register("exp_abs")
class ExpAbs(Penalty):
    """Exponential penalty ``scale * sum(exp(|x|) - 1)``.

    Near zero it behaves like ``scale * (|x| + x**2/2)`` — a weaker pull to exactly zero than a
    pure L1 of the same scale's slope at large ``|x|`` — while large weights are penalised
    exponentially, harder than any L2.

    Args:
        scale: coefficient, a finite number >= 0. Default 0.01.

    >>> ExpAbs(1.0)(torch.zeros(3))
    tensor(0.)
    """

    def __init__(self, scale: float = 0.01) -> None:
        self.scale = check_coefficient(scale, "scale", "ExpAbs")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.expm1(x.abs()).sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x.abs()).mul_(torch.sign(x)).mul_(self.scale)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.exp(x.abs())
        value = self.scale * (e.sum() - x.numel())
        return value, e.mul_(torch.sign(x)).mul_(self.scale)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale}
