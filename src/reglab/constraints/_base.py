"""The abstract constraint: a small callable ``constraint(w) -> projected w``."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import torch

from reglab._registry import Registry
from reglab._validation import invalid

__all__ = [
    "EPSILON",
    "Constraint",
    "beyond_rounding",
    "check_axis",
    "column_norms",
    "registry",
    "rounding",
    "unit_dims",
]

registry: Registry[Constraint] = Registry("constraint")

#: Keras' ``backend.epsilon()``, added to norms before dividing.
EPSILON = 1e-7


class Constraint(abc.ABC):
    """Base class of reglab's constraints: projections applied to a parameter after each step.

    ``__call__(w)`` returns the projected tensor (it does not modify ``w``);
    ``reglab.regularization.Regularization.apply_constraints`` copies the result into the
    parameter under ``torch.no_grad()`` after the optimizer step. ``get_config()`` returns
    exactly the constructor arguments.
    """

    @abc.abstractmethod
    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """Return the projection of ``w`` (same shape)."""

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a dict."""

    def violated(self, w: torch.Tensor) -> torch.Tensor:
        """Where ``w`` lies outside the constraint's set: a bool tensor broadcastable against
        ``w``, True for each unit (norm constraints: shaped like the kept-dim norms) or entry
        that ``self(w)`` moves by more than rounding. ``Regularization.statistics`` counts
        these as ``projected``.

        Keras' norm constraints divide by ``norm + 1e-7``, which changes every value a
        little (by the relative amount ``1e-7 / norm``): subclasses therefore compare the
        norms with their bounds. This default compares ``self(w)`` with ``w`` entrywise
        (``beyond_rounding``).
        """
        return beyond_rounding(w, self(w))

    @property
    def per_unit(self) -> bool:
        """Whether the projection works per output unit with the default layout (dim 0 is
        the unit). ``reglab.attach`` then hands it the parameter as ``(units, ...)``
        following the module's layout (see ``reglab.layouts``)."""
        return False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        """Rebuild a constraint from ``get_config``'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.get_config() == other.get_config()  # type: ignore[attr-defined]

    __hash__ = object.__hash__


def check_axis(axis: Any, owner: str) -> int | tuple[int, ...] | None:
    """Validate an ``axis=`` argument: None, an int, or a sequence of ints."""
    if axis is None:
        return None
    if isinstance(axis, int) and not isinstance(axis, bool):
        return axis
    if (
        isinstance(axis, Sequence)
        and not isinstance(axis, str)
        and all(isinstance(a, int) and not isinstance(a, bool) for a in axis)
    ):
        return tuple(axis)
    raise invalid("axis", owner, "None, an int or a sequence of ints", axis)


def unit_dims(w: torch.Tensor, axis: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """Dimensions a per-unit norm is taken over.

    ``axis=None`` means *per output unit in PyTorch's layout*: every dim but 0 for tensors of
    2+ dims (``Linear.weight`` (out, in) -> dim 1; ``ConvNd.weight`` (out, in, *k) -> dims
    1..), and the whole vector for 1-D tensors (a bias). Keras' default ``axis=0`` assumes its
    ``(in, out)`` kernel layout, which is why reglab's default differs.
    """
    if axis is None:
        return tuple(range(1, w.ndim)) if w.ndim >= 2 else (0,)
    return (axis,) if isinstance(axis, int) else axis


def column_norms(w: torch.Tensor, axis: int | tuple[int, ...] | None) -> torch.Tensor:
    """L2 norms over ``unit_dims``, kept broadcastable against ``w``."""
    return w.square().sum(dim=unit_dims(w, axis), keepdim=True).sqrt()


def rounding(dtype: torch.dtype) -> float:
    """The relative tolerance under which two values of ``dtype`` count as equal: 16 units
    in the last place (``16 * finfo(dtype).eps``: 1.9e-6 for float32, 0.0625 for bfloat16),
    enough for a norm summed over thousands of entries."""
    return 16 * torch.finfo(dtype).eps


def beyond_rounding(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Which entries ``after`` differs from ``before`` by more than rounding:
    ``|after - before| > rounding(dtype) * |before|`` (any change of an exact zero counts).

    >>> beyond_rounding(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0 + 1e-7, 0.5, 1e-30]))
    tensor([False,  True,  True])
    """
    return (after - before).abs() > rounding(before.dtype) * before.abs()
