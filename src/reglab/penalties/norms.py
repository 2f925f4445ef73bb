"""Elementwise norm penalties: L1, L2, L1L2 (Keras 3's exact formulas) and ExpAbs.

Their coefficients may also be 1-D tensors of length K, one per member of a
``reglab.ensembles.ModelStack``: the penalised tensor then has the members along dim 0
and ``value = Σ_k c_k · Σ f(x[k])`` (L1, L2 and L1L2 compute it in
:mod:`reglab.penalties.members`, skipping members whose coefficient is zero).
"""

from __future__ import annotations

from typing import Any

import torch

from reglab._validation import Checked, check_coefficients
from reglab.penalties._base import Penalty, registry
from reglab.penalties.members import (
    Coefficient,
    member_add_gradient_,
    member_gradient,
    member_value,
    per_member,
)

__all__ = ["L1", "L1L2", "L2", "ExpAbs", "number_coefficients"]

# The fused fast path calls value_and_gradient() once per step on every penalised weight. On
# CPU each fresh parameter-sized allocation costs page faults, so the scalar-coefficient case
# shares one allocation (the gradient) and reduces with allocation-free dot products.


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _weighted_sum(c: Coefficient, elementwise: torch.Tensor, owner: str) -> torch.Tensor:
    """``c * Σ elementwise``, per member along dim 0 when ``c`` is a tensor (reduced per
    member first: no second tensor of the input's size)."""
    if isinstance(c, torch.Tensor):
        per_member(c, elementwise, owner)  # checks the member dimension
        sums = elementwise.reshape(elementwise.shape[0], -1).sum(1)  # (K,)
        return torch.dot(c.to(sums.device, sums.dtype), sums)
    return c * elementwise.sum()


def _scale(g: torch.Tensor, c: Coefficient, owner: str) -> torch.Tensor:
    return g.mul_(per_member(c, g, owner) if isinstance(c, torch.Tensor) else c)


def _config(c: Coefficient) -> Coefficient:
    return c.clone() if isinstance(c, torch.Tensor) else c


@registry.register("l1")
class L1(Penalty):
    """L1 penalty ``l1 * sum(|x|)``, as ``keras.regularizers.L1``.

    Drives weights to exactly zero (a sparse solution); on activity it makes codes sparse.
    The gradient is ``l1 * sign(x)`` (0 at 0, like autograd's).

    Args:
        l1: coefficient, a finite number >= 0 (or a (K,) tensor, one per stack member).
            Default 0.01 (Keras' default); ``None`` means the default, as in Keras.

    Shape:
        Any tensor; returns a 0-dim tensor.

    >>> L1(0.5)(torch.tensor([1.0, -2.0]))
    tensor(1.5000)
    """

    l1 = Checked(check_coefficients)

    def __init__(self, l1: Coefficient | None = 0.01) -> None:
        self.l1 = 0.01 if l1 is None else l1  # None: Keras' default

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.l1, torch.Tensor):
            return member_value(x, self.l1, 0.0, "L1")
        return _weighted_sum(self.l1, x.abs(), "L1")

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.l1, torch.Tensor):
            return member_gradient(x, self.l1, 0.0, "L1")
        return _scale(torch.sign(x), self.l1, "L1")

    def add_gradient_(self, grad: torch.Tensor, x: torch.Tensor, factor: Any = 1.0) -> None:
        if isinstance(self.l1, torch.Tensor):
            member_add_gradient_(grad, x, self.l1, 0.0, factor, "L1")
        else:
            super().add_gradient_(grad, x, factor)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.l1, torch.Tensor):
            return super().value_and_gradient(x)
        sign = torch.sign(x)
        return self.l1 * _dot(x, sign), sign.mul_(self.l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": _config(self.l1)}


@registry.register("l2")
class L2(Penalty):
    """L2 penalty ``l2 * sum(x**2)`` (no 1/2), as ``keras.regularizers.L2``.

    On a weight this is "weight decay" with rate ``2 * l2 * lr`` under plain SGD (not under Adam,
    where the penalty's gradient is rescaled; use AdamW for decoupled decay).

    Args:
        l2: coefficient, a finite number >= 0 (or a (K,) tensor, one per stack member).
            Default 0.01 (Keras' default); ``None`` means the default, as in Keras.

    >>> L2(2.0)(torch.ones(5, 5))
    tensor(50.)
    """

    l2 = Checked(check_coefficients)

    def __init__(self, l2: Coefficient | None = 0.01) -> None:
        self.l2 = 0.01 if l2 is None else l2  # None: Keras' default

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.l2, torch.Tensor):
            return member_value(x, 0.0, self.l2, "L2")
        return _weighted_sum(self.l2, x.square(), "L2")

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.l2, torch.Tensor):
            return member_gradient(x, 0.0, self.l2, "L2")
        return _scale(x.mul(2.0), self.l2, "L2")

    def add_gradient_(self, grad: torch.Tensor, x: torch.Tensor, factor: Any = 1.0) -> None:
        if isinstance(self.l2, torch.Tensor):
            member_add_gradient_(grad, x, 0.0, self.l2, factor, "L2")
        else:
            super().add_gradient_(grad, x, factor)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.l2, torch.Tensor):
            return super().value_and_gradient(x)
        return self.l2 * _dot(x, x), x.mul(2.0 * self.l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": _config(self.l2)}


@registry.register("l1l2", "l1_l2")
class L1L2(Penalty):
    """Elastic-net penalty ``l1 * sum(|x|) + l2 * sum(x**2)``, as ``keras.regularizers.L1L2``.

    Both coefficients default to 0.0, exactly as in Keras 3, so ``L1L2()`` and the strings
    ``"l1l2"`` / ``"l1_l2"`` build a zero penalty (Keras 3's ``get("l1l2")`` does the same).
    Either coefficient may be a (K,) tensor, one per stack member.

    >>> L1L2(l1=0.5, l2=0.25)(torch.tensor([1.0, -2.0]))
    tensor(2.7500)
    """

    l1 = Checked(check_coefficients)
    l2 = Checked(check_coefficients)

    def __init__(self, l1: Coefficient | None = 0.0, l2: Coefficient | None = 0.0) -> None:
        self.l1 = 0.0 if l1 is None else l1  # None: Keras' default
        self.l2 = 0.0 if l2 is None else l2

    def _per_member(self) -> bool:
        return isinstance(self.l1, torch.Tensor) or isinstance(self.l2, torch.Tensor)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._per_member():
            return member_value(x, self.l1, self.l2, "L1L2")
        return _weighted_sum(self.l1, x.abs(), "L1L2") + _weighted_sum(self.l2, x.square(), "L1L2")

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        if self._per_member():
            return member_gradient(x, self.l1, self.l2, "L1L2")
        return _scale(torch.sign(x), self.l1, "L1L2").add_(x, alpha=2.0 * self.l2)

    def add_gradient_(self, grad: torch.Tensor, x: torch.Tensor, factor: Any = 1.0) -> None:
        if self._per_member():
            member_add_gradient_(grad, x, self.l1, self.l2, factor, "L1L2")
        else:
            super().add_gradient_(grad, x, factor)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._per_member():
            return super().value_and_gradient(x)
        # One allocation: sign(x) * l1 + 2 * l2 * x.
        sign = torch.sign(x)
        value = self.l1 * _dot(x, sign) + self.l2 * _dot(x, x)
        return value, sign.mul_(self.l1).add_(x, alpha=2.0 * self.l2)

    def get_config(self) -> dict[str, Any]:
        return {"l1": _config(self.l1), "l2": _config(self.l2)}


@registry.register("exp_abs")
class ExpAbs(Penalty):
    """Exponential penalty ``coefficient * sum(exp(|x|) - 1)``.

    Near zero it behaves like ``coefficient * (|x| + x**2/2)`` — an L1 pull toward zero plus a
    little curvature — while large weights are penalised exponentially, harder than any L2.

    Args:
        coefficient: a finite number >= 0 (or a (K,) tensor, one per stack member).
            Default 0.01.

    >>> ExpAbs(1.0)(torch.zeros(3))
    tensor(0.)
    """

    coefficient = Checked(check_coefficients)

    def __init__(self, coefficient: Coefficient = 0.01) -> None:
        self.coefficient = coefficient

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _weighted_sum(self.coefficient, torch.expm1(x.abs()), "ExpAbs")

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        return _scale(torch.exp(x.abs()).mul_(torch.sign(x)), self.coefficient, "ExpAbs")

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.coefficient, torch.Tensor):
            return super().value_and_gradient(x)
        e = torch.exp(x.abs())
        value = self.coefficient * (e.sum() - x.numel())
        return value, e.mul_(torch.sign(x)).mul_(self.coefficient)

    def get_config(self) -> dict[str, Any]:
        return {"coefficient": _config(self.coefficient)}


def number_coefficients(penalty: object) -> tuple[float, float] | None:
    """``(l1, l2)`` of an ``L1``, ``L2`` or ``L1L2`` whose coefficients are numbers (not
    per-member tensors), else None: the penalties that the fast paths evaluate as
    ``l1 · Σ|x| + l2 · Σx²``."""
    if type(penalty) is L1 and not isinstance(penalty.l1, torch.Tensor):
        return penalty.l1, 0.0
    if type(penalty) is L2 and not isinstance(penalty.l2, torch.Tensor):
        return 0.0, penalty.l2
    if type(penalty) is L1L2 and not (
        isinstance(penalty.l1, torch.Tensor) or isinstance(penalty.l2, torch.Tensor)
    ):
        return penalty.l1, penalty.l2
    return None
