"""One autograd node for all closed-form penalties of a step (the fast path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reglab.penalties import Penalty

__all__ = ["fused_penalties"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    # Sums of squares overflow half precision; accumulate in float32 at least.
    return torch.float32 if t.dtype in _LOW_PRECISION else t.dtype


class _FusedPenalties(torch.autograd.Function):
    """values[i] = scales[i] * penalties[i](tensors[i]), computed without recording a graph.

    Backward writes ``grad_output[i] * scales[i] * penalties[i].gradient(tensors[i])``, so the
    result is exact under loss scaling, gradient accumulation and AMP (the incoming gradient is
    honoured, not assumed to be 1).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, items: Sequence[tuple[Penalty, float]], *tensors: torch.Tensor
    ) -> torch.Tensor:
        ctx.items = items
        ctx.save_for_backward(*tensors)
        values = [
            pen(t.to(_compute_dtype(t))) * scale
            for (pen, scale), t in zip(items, tensors, strict=True)
        ]
        dtype = values[0].dtype
        for v in values[1:]:
            dtype = torch.promote_types(dtype, v.dtype)
        return torch.stack([v.to(dtype) for v in values])  # (n_items,)

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        tensors = ctx.saved_tensors
        grads: list[torch.Tensor | None] = [None]  # for `items`
        for i, ((pen, scale), t) in enumerate(zip(ctx.items, tensors, strict=True)):
            if not ctx.needs_input_grad[i + 1]:
                grads.append(None)
                continue
            g = pen.gradient(t.detach().to(_compute_dtype(t)))
            grads.append(g.mul_(grad_values[i].to(g.dtype) * scale).to(t.dtype))
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
