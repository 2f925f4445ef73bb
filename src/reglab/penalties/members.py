"""Per-member coefficients: a penalty on a ``reglab.ensembles.ModelStack``'s stacked tensor,
members along dim 0, with one coefficient per member (``(K,)`` tensors).

``value = Σ_k l1_k · Σ|x[k]| + l2_k · Σx[k]²``, and its closed-form gradient, computed on
runs of consecutive members whose terms are alike. On the CPU the coefficients are read (free
there), so members whose coefficient is zero cost nothing — in a stacked study most members
have no weight or no activity penalty, and they sit next to each other. Accelerator
coefficients are not read (it would synchronise): every member is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Coefficient",
    "member_add_gradient_",
    "member_gradient",
    "member_value",
    "per_member",
]

#: A penalty coefficient: a number, or a ``(K,)`` tensor with one value per stack member.
Coefficient = float | torch.Tensor


def per_member(c: torch.Tensor, x: torch.Tensor, owner: str) -> torch.Tensor:
    """``c`` (K,) shaped to broadcast against ``x`` (K, ...)."""
    if x.ndim == 0 or x.shape[0] != c.shape[0]:
        raise ValueError(
            f"{owner} has {c.shape[0]} per-member coefficients but the tensor has shape "
            f"{tuple(x.shape)}; members must be along dim 0."
        )
    return c.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1)))


@dataclass(frozen=True)
class _Segment:
    """Members ``start:stop``, whose non-zero terms are alike: the coefficients of each
    (``(stop - start,)`` tensors in the input's dtype, or numbers), None for a zero term."""

    start: int
    stop: int
    l1: Coefficient | None
    l2: Coefficient | None


def _flags(c: Coefficient, k: int) -> list[bool]:
    if not isinstance(c, torch.Tensor):
        return [c != 0] * k
    if c.device.type != "cpu":  # reading it would synchronise: assume every member is on
        return [True] * k
    return [v != 0 for v in c.tolist()]


def _stamp(c: Coefficient) -> Any:
    """What identifies a coefficient's current values (a tensor changes in place)."""
    return (id(c), c._version) if isinstance(c, torch.Tensor) else c


#: Segments of recent (coefficients, input) combinations: a stack's penalties are evaluated
#: every step with the same coefficient tensors. The entries hold the tensors, so an id is
#: not reused while its entry lives.
_SEGMENTS: dict[Any, tuple[list[_Segment], Any]] = {}


def _segments(x: torch.Tensor, l1: Coefficient, l2: Coefficient, owner: str) -> list[_Segment]:
    """Runs of consecutive members of ``x`` (members along dim 0) whose terms are zero or
    not alike; cached per coefficient tensor and its version (an in-place change is seen)."""
    key = (_stamp(l1), _stamp(l2), x.shape[0], x.dtype, x.device)
    cached = _SEGMENTS.get(key)
    if cached is not None:
        return cached[0]
    for c in (l1, l2):
        if isinstance(c, torch.Tensor):
            per_member(c, x, owner)  # checks the member dimension
    k = x.shape[0]
    runs: list[list[Any]] = []
    for m, pair in enumerate(zip(_flags(l1, k), _flags(l2, k), strict=True)):
        if runs and runs[-1][2:] == list(pair):
            runs[-1][1] = m + 1
        else:
            runs.append([m, m + 1, *pair])

    def part(c: Coefficient, a: int, b: int, on: bool) -> Coefficient | None:
        if not on:
            return None
        return c[a:b].to(x.device, x.dtype) if isinstance(c, torch.Tensor) else c

    out = [_Segment(a, b, part(l1, a, b, f1), part(l2, a, b, f2)) for a, b, f1, f2 in runs]
    if len(_SEGMENTS) >= 64:
        _SEGMENTS.clear()
    _SEGMENTS[key] = (out, (l1, l2))
    return out


def _column(c: Coefficient, like: torch.Tensor) -> Coefficient:
    """A segment's coefficient shaped to broadcast against ``like`` (members along dim 0)."""
    return c.view(-1, *([1] * (like.ndim - 1))) if isinstance(c, torch.Tensor) else c


def member_value(x: torch.Tensor, l1: Coefficient, l2: Coefficient, owner: str) -> torch.Tensor:
    """``Σ_k l1_k · Σ|x[k]| + l2_k · Σx[k]²`` with per-member (or shared) coefficients,
    reduced member by member (no second tensor of the input's size) and only over members
    whose terms are non-zero. Differentiable."""
    differentiable = torch.is_grad_enabled() and x.requires_grad
    parts = []
    for seg in _segments(x, l1, l2, owner):
        rows = x[seg.start : seg.stop].reshape(seg.stop - seg.start, -1)
        if seg.l1 is not None:
            parts.append((_column(seg.l1, rows) * rows.abs().sum(1, keepdim=True)).sum())
        if seg.l2 is not None:
            # vector_norm reads once without a temporary; its gradient at 0 is not x's.
            squares = (
                rows.square().sum(1, keepdim=True)
                if differentiable
                else torch.linalg.vector_norm(rows, 2, dim=1, keepdim=True).square()
            )
            parts.append((_column(seg.l2, rows) * squares).sum())
    if not parts:  # every member's coefficients are zero: a zero still on x's graph
        return x.reshape(-1)[:1].sum() * 0.0
    return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


def member_gradient(x: torch.Tensor, l1: Coefficient, l2: Coefficient, owner: str) -> torch.Tensor:
    """``l1_k · sign(x[k]) + 2 · l2_k · x[k]`` in one fresh tensor, each member's slice
    written once (zeros where both coefficients are zero)."""
    grad = torch.empty_like(x)
    for seg in _segments(x, l1, l2, owner):
        xs, gs = x[seg.start : seg.stop], grad[seg.start : seg.stop]
        if seg.l1 is not None:
            torch.sign(xs, out=gs).mul_(_column(seg.l1, xs))
            if isinstance(seg.l2, torch.Tensor):
                gs.addcmul_(xs, _column(seg.l2, xs), value=2.0)
            elif seg.l2 is not None:
                gs.add_(xs, alpha=2.0 * seg.l2)
        elif seg.l2 is not None:
            torch.mul(xs, _column(seg.l2, xs), out=gs).mul_(2.0)
        else:
            gs.zero_()
    return grad


def _add_scaled_(grad: torch.Tensor, t: torch.Tensor, c: Coefficient) -> None:
    """``grad += t · c`` in place (``c`` a number or a tensor broadcasting against ``t``)."""
    if isinstance(c, torch.Tensor):
        grad.addcmul_(t, c)
    else:
        grad.add_(t, alpha=c)


def member_add_gradient_(
    grad: torch.Tensor, x: torch.Tensor, l1: Coefficient, l2: Coefficient, factor: Any, owner: str
) -> None:
    """``grad += factor · (l1_k · sign(x[k]) + 2 · l2_k · x[k])`` in place, on the members
    whose coefficients are non-zero only: no tensor of the input's size (the L1 term's
    ``sign`` is as large as a run of members)."""
    for seg in _segments(x, l1, l2, owner):
        xs, gs = x[seg.start : seg.stop], grad[seg.start : seg.stop]
        if seg.l1 is not None:
            _add_scaled_(gs, torch.sign(xs), _column(seg.l1, xs) * factor)
        if seg.l2 is not None:
            _add_scaled_(gs, xs, _column(seg.l2, xs) * (2.0 * factor))
