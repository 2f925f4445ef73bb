"""One autograd node for all closed-form penalties of a step (the fast path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reglab.penalties import Penalty

__all__ = ["fused_penalties"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # Sums of squares overflow half precision; compute in float32 at least.
    return t.float() if t.dtype in _LOW_PRECISION else t


class _FusedPenalties(torch.autograd.Function):
    """values[i] = scales[i] * penalties[i](tensors[i]), computed without recording a graph.

    Forward computes each value together with its closed-form gradient (sharing work and the
    single allocation); backward scales the kept gradient in place by
    ``grad_output[i] * scales[i]``, so the result is exact under loss scaling, gradient
    accumulation and AMP (the incoming gradient is honoured, not assumed to be 1).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, items: Sequence[tuple[Penalty, float]], *tensors: torch.Tensor
    ) -> torch.Tensor:
        values, grads = [], []
        for (pen, scale), t in zip(items, tensors, strict=True):
            x = _upcast(t)
            if t.requires_grad:
                value, grad = pen.value_and_gradient(x)
            else:
                value, grad = pen(x), None
            values.append(value if scale == 1.0 else value * scale)
            grads.append(grad)
        ctx.scales = [scale for _, scale in items]
        ctx.dtypes = [t.dtype for t in tensors]
        ctx.grads = grads
        dtype = values[0].dtype
        for v in values[1:]:
            dtype = torch.promote_types(dtype, v.dtype)
        return torch.stack([v if v.dtype == dtype else v.to(dtype) for v in values])  # (n,)

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads: list[torch.Tensor | None] = [None]  # for `items`
        for i, (g, scale, dtype) in enumerate(zip(ctx.grads, ctx.scales, ctx.dtypes, strict=True)):
            if g is None or not ctx.needs_input_grad[i + 1]:
                grads.append(None)
                continue
            factor = grad_values[i] * scale
            # On CPU reading the factor is free: skip a full pass over the gradient when it is
            # exactly 1 (the usual case without loss scaling). On accelerators it would cost a
            # device sync, so always multiply there.
            if factor.device.type != "cpu" or factor.item() != 1.0:
                g.mul_(factor.to(g.dtype))
            grads.append(g if g.dtype == dtype else g.to(dtype))
        ctx.grads = None  # backward runs once: release the gradients now
        return tuple(grads)


def fused_penalties(
    items: Sequence[tuple[Penalty, float]], tensors: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Return the vector of scaled penalty values, differentiable through one node.

    Args:
        items: ``(penalty, scale)`` pairs; every penalty must have ``has_closed_form()``.
        tensors: the tensors they apply to, one per item.

    Shape:
        Returns ``(len(items),)``.
    """
    return _FusedPenalties.apply(items, *tensors)
