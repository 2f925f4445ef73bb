"""Penalties: small callables ``penalty(tensor) -> scalar tensor`` added to the loss.

Weight penalties (``L1``, ``L2``, ``L1L2``, ``ExpAbs``,
``Orthogonal``, ``ToReference``) and activity penalties (any of those on a layer's
output, plus ``KLSparsity``, ``TemporalDifference`` and ``NegativeEntropy``, the confidence
penalty on logits). Formulas and defaults follow
Keras 3 where Keras has the penalty. Attach them to a model with ``reglab.attach``.
"""

from __future__ import annotations

from typing import Any

from reglab.penalties._base import Penalty, registry
from reglab.penalties.activity import KLSparsity, TemporalDifference
from reglab.penalties.entropy import NegativeEntropy
from reglab.penalties.input_gradient import InputGradient
from reglab.penalties.norms import L1, L1L2, L2, ExpAbs
from reglab.penalties.orthogonal import Orthogonal
from reglab.penalties.reference import ToReference

__all__ = [
    "L1",
    "L1L2",
    "L2",
    "ExpAbs",
    "InputGradient",
    "KLSparsity",
    "NegativeEntropy",
    "Orthogonal",
    "Penalty",
    "TemporalDifference",
    "ToReference",
    "get",
    "serialize",
]


def get(identifier: Any) -> Any:
    """Resolve ``None``, a name (``"l2"``), a config dict or a callable to a penalty.

    >>> get("l2")
    L2(l2=0.01)
    >>> get({"class_name": "L1", "config": {"l1": 0.001}})
    L1(l1=0.001)
    """
    return registry.get(identifier)


def serialize(penalty: Penalty) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` for a built-in penalty (inverse of ``get``)."""
    return registry.serialize(penalty)
