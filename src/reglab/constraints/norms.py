"""Norm constraints with Keras 3's formulas, taken per output unit in PyTorch's layout."""

from __future__ import annotations

from typing import Any

import torch

from reglab._validation import Checked, check_coefficient, invalid
from reglab.constraints._base import (
    EPSILON,
    Constraint,
    check_axis,
    column_norms,
    registry,
    rounding,
)

__all__ = ["MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"]


@registry.register("max_norm")
class MaxNorm(Constraint):
    """Rescale each unit's incoming weight vector to L2 norm at most ``max_value``.

    ``w * clip(n, 0, max_value) / (1e-7 + n)`` with ``n`` the per-unit norm (Keras'
    ``MaxNorm``). Srivastava et al. (2014) use it with dropout (``max_value`` 3–4).

    Args:
        max_value: the largest allowed norm, a finite number >= 0. Default 2.0.
        axis: dimension(s) the norm is taken over. ``None`` (default) means per output unit:
            dim 1 of a ``Linear.weight`` (out, in), dims 1.. of a ``ConvNd.weight``
            (out, in, *k), the whole vector for a 1-D tensor; attached with
            ``reglab.attach``, the module's own layout decides (each output unit of a
            ``ConvTranspose`` or ``transformers`` ``Conv1D`` kernel; see
            ``reglab.layouts``).

    >>> MaxNorm(1.0)(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """

    max_value = Checked(check_coefficient)

    def __init__(self, max_value: float = 2.0, axis: int | tuple[int, ...] | None = None) -> None:
        self.max_value = check_coefficient(max_value, "max_value", "MaxNorm")
        self.axis = check_axis(axis, "MaxNorm")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = column_norms(w, self.axis)
        return w * (norms.clamp(0.0, self.max_value) / (EPSILON + norms))

    def violated(self, w: torch.Tensor) -> torch.Tensor:
        """Units whose norm exceeds ``max_value`` by more than rounding (kept-dim norms'
        shape). A unit at or below the bound is not projected, though the ``n / (n + 1e-7)``
        factor rescales it slightly."""
        return column_norms(w, self.axis) > self.max_value * (1 + rounding(w.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


@registry.register("min_max_norm")
class MinMaxNorm(Constraint):
    """Move each unit's norm into ``[min_value, max_value]`` at speed ``rate``.

    ``w * (rate * clip(n, min_value, max_value) + (1 - rate) * n) / (1e-7 + n)`` (Keras'
    ``MinMaxNorm``): ``rate=1`` enforces the bounds strictly, smaller rates move toward them.

    Args:
        min_value: lower norm bound, >= 0. Default 0.0.
        max_value: upper norm bound, >= ``min_value``. Default 1.0.
        rate: in [0, 1]. Default 1.0.
        axis: dimension(s) the norm is taken over. ``None`` (default) means per output unit:
            dim 1 of a ``Linear.weight`` (out, in), dims 1.. of a ``ConvNd.weight``
            (out, in, *k), the whole vector for a 1-D tensor; attached with
            ``reglab.attach``, the module's own layout decides (each output unit of a
            ``ConvTranspose`` or ``transformers`` ``Conv1D`` kernel; see
            ``reglab.layouts``).
    """

    min_value = Checked(check_coefficient)
    max_value = Checked(check_coefficient)
    rate = Checked(check_coefficient)

    def __init__(
        self,
        min_value: float = 0.0,
        max_value: float = 1.0,
        rate: float = 1.0,
        axis: int | tuple[int, ...] | None = None,
    ) -> None:
        self.min_value = check_coefficient(min_value, "min_value", "MinMaxNorm")
        self.max_value = check_coefficient(max_value, "max_value", "MinMaxNorm")
        if self.max_value < self.min_value:
            raise invalid(
                "max_value", "MinMaxNorm", f"a number >= min_value={self.min_value}", max_value
            )
        self.rate = check_coefficient(rate, "rate", "MinMaxNorm")
        if self.rate > 1.0:
            raise invalid("rate", "MinMaxNorm", "a number in [0, 1]", rate)
        self.axis = check_axis(axis, "MinMaxNorm")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = column_norms(w, self.axis)
        desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))

    def violated(self, w: torch.Tensor) -> torch.Tensor:
        """Units whose norm lies outside ``[min_value, max_value]`` by more than rounding
        (none when ``rate`` is 0: the norms are left as they are)."""
        norms, tol = column_norms(w, self.axis), rounding(w.dtype)
        if self.rate == 0:
            return torch.zeros_like(norms, dtype=torch.bool)
        return (norms > self.max_value * (1 + tol)) | (norms < self.min_value * (1 - tol))

    def get_config(self) -> dict[str, Any]:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


@registry.register("unit_norm")
class UnitNorm(Constraint):
    """Rescale each unit's weight vector to unit L2 norm: ``w / (1e-7 + n)`` (Keras').

    Args:
        axis: dimension(s) the norm is taken over. ``None`` (default) means per output unit:
            dim 1 of a ``Linear.weight`` (out, in), dims 1.. of a ``ConvNd.weight``
            (out, in, *k), the whole vector for a 1-D tensor; attached with
            ``reglab.attach``, the module's own layout decides (each output unit of a
            ``ConvTranspose`` or ``transformers`` ``Conv1D`` kernel; see
            ``reglab.layouts``).
    """

    def __init__(self, axis: int | tuple[int, ...] | None = None) -> None:
        self.axis = check_axis(axis, "UnitNorm")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w / (EPSILON + column_norms(w, self.axis))

    def violated(self, w: torch.Tensor) -> torch.Tensor:
        """Units whose norm differs from 1 by more than rounding."""
        return (column_norms(w, self.axis) - 1).abs() > rounding(w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


@registry.register("non_neg")
class NonNeg(Constraint):
    """Clip negative entries to zero: ``max(w, 0)`` (Keras' ``NonNeg``)."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w.clamp(min=0.0)

    def violated(self, w: torch.Tensor) -> torch.Tensor:
        """Negative entries."""
        return w < 0

    def get_config(self) -> dict[str, Any]:
        return {}


for _cls in (MaxNorm, MinMaxNorm, UnitNorm):
    # With the default axis, the norm is each output unit's: attach follows the module's layout.
    _cls.per_unit = property(lambda self: self.axis is None)  # type: ignore[attr-defined]
