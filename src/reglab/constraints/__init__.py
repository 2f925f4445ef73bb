"""Constraints: projections applied to parameters after each optimizer step.

``MaxNorm``, ``MinMaxNorm``, ``UnitNorm`` and ``NonNeg`` follow Keras 3's
formulas (epsilon 1e-7) with norms taken per output unit in PyTorch's layout; ``SpectralNorm``
(a bound on the largest singular value) and ``Orthogonal`` (the nearest orthogonal matrix) treat
the kernel as a ``(units, fan_in)`` matrix. Attach them with
``reglab.attach`` (``kernel_constraint=`` / ``bias_constraint=``). ``NormBound`` enforces
a norm bound the other way, as a Lagrangian term with a multiplier updated by dual ascent.
"""

from __future__ import annotations

from typing import Any

from reglab.constraints._base import Constraint, registry
from reglab.constraints.norm_bound import NormBound
from reglab.constraints.norms import MaxNorm, MinMaxNorm, NonNeg, UnitNorm
from reglab.constraints.spectral import Orthogonal, SpectralNorm

__all__ = [
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "NormBound",
    "Orthogonal",
    "SpectralNorm",
    "UnitNorm",
    "get",
    "serialize",
]


def get(identifier: Any) -> Any:
    """Resolve ``None``, a name (``"max_norm"``), a config dict or a callable to a constraint.

    >>> get("max_norm")
    MaxNorm(max_value=2.0, axis=None)
    """
    return registry.get(identifier)


def serialize(constraint: Constraint) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` for a built-in constraint."""
    return registry.serialize(constraint)
