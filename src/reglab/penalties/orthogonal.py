"""Soft orthogonality penalty, Keras 3's ``OrthogonalRegularizer`` formula."""

from __future__ import annotations

from typing import Any

import torch

from reglab._validation import Checked, check_choice, check_coefficient
from reglab.penalties._base import Penalty, registry

__all__ = ["Orthogonal"]

_EPS = 1e-7  # keras.backend.epsilon(): norms below it are treated as eps


def _as_matrix(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(rows, n) view whose rows are the vectors made orthogonal."""
    if x.ndim < 2:
        raise ValueError(
            f"Orthogonal needs a tensor with at least 2 dimensions. Got shape {tuple(x.shape)}."
        )
    m = x.reshape(x.shape[0], -1)  # conv kernels (out, in, *k): one row per output unit
    m = m if mode == "rows" else m.T
    if m.shape[0] < 2:
        raise ValueError(
            f"Orthogonal(mode={mode!r}) needs at least 2 vectors to compare. "
            f"Got shape {tuple(x.shape)}."
        )
    return m


@registry.register("orthogonal", "orthogonal_regularizer", "OrthogonalRegularizer")
class Orthogonal(Penalty):
    """Penalise non-orthogonality of the rows (or columns) of a matrix.

    With ``N`` the matrix with unit-L2 rows (``mode="rows"``) or columns (``"columns"``)
    — normalised as Keras does, ``x / max(||x||, 1e-7)`` — and ``P = N Nᵀ`` (n × n)::

        value = factor * 0.5 * sum(|P_ij|, i != j) / (n * (n - 1) / 2)

    i.e. ``factor`` times the mean absolute cosine between distinct vectors (each pair appears
    twice in the sum, hence Keras' 0.5): 0 for orthogonal vectors, ``factor`` for parallel
    ones. This is
    ``keras.regularizers.OrthogonalRegularizer`` applied to the tensor *as given*. Mind the
    layouts: a Keras ``Dense`` kernel is ``(in, out)`` and a PyTorch ``Linear.weight`` is
    ``(out, in)``, so Keras' ``mode="columns"`` on a kernel (one vector per output unit) is
    ``mode="rows"`` here. Tensors with more than 2 dimensions (conv kernels ``(out, in, *k)``)
    are flattened to ``(out, -1)`` first. Attached with ``reglab.attach``, "rows" are the
    module's output units whatever its layout (a ``ConvTranspose`` or ``transformers``'
    ``Conv1D`` kernel is rearranged to ``(units, ...)`` first; see ``reglab.layouts``).

    Args:
        factor: coefficient, a finite number >= 0. Default 0.01.
        mode: ``"rows"`` (default) or ``"columns"``.

    >>> Orthogonal(1.0)(torch.eye(3))
    tensor(0.)
    """

    per_unit = True

    factor = Checked(check_coefficient)

    def __init__(self, factor: float = 0.01, mode: str = "rows") -> None:
        self.factor = factor
        self.mode = check_choice(mode, "mode", "Orthogonal", ("rows", "columns"))

    def _scale(self, n: int) -> float:
        return self.factor * 0.5 / (n * (n - 1) / 2.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = _as_matrix(x, self.mode)
        inv = torch.rsqrt(m.square().sum(1, keepdim=True)).clamp(max=1.0 / _EPS)
        unit = m * inv
        product = unit @ unit.T
        off = product * (1.0 - torch.eye(m.shape[0], dtype=m.dtype, device=m.device))
        return self._scale(m.shape[0]) * off.abs().sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        m = _as_matrix(x, self.mode)
        n = m.shape[0]
        norm = m.square().sum(1, keepdim=True).sqrt()
        inv = torch.reciprocal(norm).clamp(max=1.0 / _EPS)
        unit = m * inv
        # dV/dP = c * sign(P) off the diagonal; P = N Nᵀ is symmetric, so dV/dN = 2 (dV/dP) N.
        g_p = torch.sign(unit @ unit.T).fill_diagonal_(0.0).mul_(self._scale(n))
        g_unit = 2.0 * (g_p @ unit)
        # Back through N = m * inv: projection onto the tangent of the sphere where the norm
        # is unclamped, a plain 1/eps scale where Keras clamps it.
        radial = unit * (unit * g_unit).sum(1, keepdim=True)
        g_m = torch.where(norm >= _EPS, (g_unit - radial) * inv, g_unit * inv)
        g_m = g_m if self.mode == "rows" else g_m.T
        return g_m.reshape(x.shape)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}
