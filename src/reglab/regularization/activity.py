"""Activity penalties: the value of a module's output, recorded where the output is made.

When a hooked module runs in training mode with gradients enabled, its output ``h`` feeds a
small side node of the autograd graph whose forward is the penalty's value (a 0-dim *token*,
computed at once, before anything downstream can modify ``h`` in place) and whose backward adds
``grad_token · ∇penalty(h)`` — the closed form for built-in penalties — to ``h``'s gradient.
``Regularization.penalty`` sums the tokens, so the gradient factor (a loss scale, a
``1/k`` of gradient accumulation) reaches every term through ordinary autograd, and
``h`` is held only the way the rest of the graph holds it: no copy, no ``sign(h)`` buffer.

Forwards that are not ordinary ones:

* **Recomputation by activation checkpointing** runs inside backward and never records.
  Non-reentrant checkpointing replays the side node (its saved tensor is part of what the
  checkpoint matches) and discards the token. Reentrant checkpointing
  (``use_reentrant=True``) runs the first forward under ``no_grad``: the value is recorded then
  (``Deferred``), and the recomputation in backward wraps the recomputed output in an
  identity node that adds the gradient, scaled by the factor the step's ``penalty()`` received.
* A forward whose graph is backpropagated before ``penalty`` consumed its record (a
  saliency map, an accumulation loop that adds the penalty after backward) marks the record
  *spent*; it is then skipped with a warning instead of failing with "backward through the
  graph a second time".
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from reglab.penalties import Penalty
from reglab.penalties.norms import number_coefficients
from reglab.regularization.rules import ActivityBinding, checked_value

__all__ = [
    "Cell",
    "Deferred",
    "Record",
    "activity_scale",
    "first_tensor",
    "in_reentrant_checkpoint",
    "late_activity",
    "replace_first_tensor",
    "token",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_REENTRANT_FORWARD = torch.utils.checkpoint.CheckpointFunction.forward.__code__
#: The backward node of reentrant checkpointing, whose recomputation runs module forwards.
REENTRANT_BACKWARD = "CheckpointFunctionBackward"


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Sums of squares overflow half precision: evaluate penalties in float32 at least."""
    return t.float() if t.dtype in _LOW_PRECISION else t


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor an activity penalty sees: the output, or the first tensor of a tuple, list
    or mapping (``nn.LSTM`` returns ``(output, (h_n, c_n))``; Hugging Face ``ModelOutput``
    objects are mappings whose first field is the main output)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    if isinstance(output, dict) and output:
        return first_tensor(next(iter(output.values())))
    return None


def replace_first_tensor(output: Any, new: torch.Tensor) -> Any:
    """``output`` with the tensor ``first_tensor`` found replaced by ``new``."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, (tuple, list)):
        items = list(output)
        items[0] = replace_first_tensor(items[0], new)
        return type(output)(items) if isinstance(output, list) else tuple(items)
    key = next(iter(output))
    output[key] = replace_first_tensor(output[key], new)
    return output


def activity_scale(binding: ActivityBinding, output: torch.Tensor) -> float:
    """The reduction's factor for one recorded output (Keras' batch division by default)."""
    penalty = binding.penalty
    if isinstance(penalty, Penalty) and penalty.batch_normalized:
        return 1.0
    if binding.reduction == "batch":  # Keras: divide by the batch size, output.shape[0]
        # Modules inside a ModelStack output (K, B, ...) and say so with reglab_batch_dim = 1.
        batch_dim = getattr(binding.module, "reglab_batch_dim", 0)
        return 1.0 / output.shape[batch_dim] if output.ndim > batch_dim else 1.0
    if binding.reduction == "mean":  # AWD-LSTM's AR: alpha * h.pow(2).mean()
        return 1.0 / max(output.numel(), 1)
    return 1.0


def in_reentrant_checkpoint() -> bool:
    """Whether this no-grad forward runs inside ``torch.utils.checkpoint``'s reentrant forward
    (found by the code object of ``CheckpointFunction.forward`` on the call stack)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _REENTRANT_FORWARD:
            return True
        frame = frame.f_back
    return False


def closed_form(penalty: Any) -> bool:
    return isinstance(penalty, Penalty) and penalty.has_closed_form()


def value_of(binding: ActivityBinding, h: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * penalty(h)`` without a graph (float32 for half-precision outputs)."""
    with torch.no_grad():
        return checked_value(binding, binding.penalty(upcast(h))) * scale


def gradient_of(binding: ActivityBinding, h: torch.Tensor, factor: Any) -> torch.Tensor:
    """``factor * ∇penalty(h)`` (a fresh tensor): the closed form, or local autograd for
    custom callables. ``factor`` is a number or a 0-dim tensor."""
    x = upcast(h.detach())
    if closed_form(binding.penalty):
        return binding.penalty.gradient(x).mul_(factor)
    with torch.enable_grad():
        x = x.requires_grad_()
        (grad,) = torch.autograd.grad(checked_value(binding, binding.penalty(x)), x)
    return grad.mul_(factor)


class _Side(torch.autograd.Function):
    """token = scale · penalty(h); backward: ∂token/∂h = scale · ∇penalty(h), closed form."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, binding: ActivityBinding, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h)  # the same storage the graph keeps anyway: no copy
        ctx.binding, ctx.scale = binding, scale
        return value_of(binding, h, scale)

    @staticmethod
    def backward(ctx: Any, grad_token: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (h,) = ctx.saved_tensors
        grad = gradient_of(ctx.binding, h, grad_token * ctx.scale)
        return grad.to(h.dtype), None, None


def _norms(h: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    """``l1 · Σ|h| + l2 · Σh²`` as native differentiable reductions: their backward saves
    ``h`` itself (no buffer) and runs in C++. Half-precision outputs accumulate in float32.
    ``l1`` and ``l2`` already include the reduction's scale."""
    low = h.dtype in _LOW_PRECISION
    value = None
    if l1:
        v = torch.linalg.vector_norm(h, 1, dtype=torch.float32) if low else h.abs().sum()
        value = l1 * v
    if l2:
        if low:
            v = torch.linalg.vector_norm(h, 2, dtype=torch.float32).square()
        else:
            v = h.square().sum()
        value = l2 * v if value is None else value + l2 * v
    return value if value is not None else h.sum() * 0.0


def token(binding: ActivityBinding, h: torch.Tensor) -> torch.Tensor:
    """The differentiable value of ``binding``'s penalty on output ``h`` (a 0-dim tensor).

    L1 / L2 / L1L2 are native reductions (their autograd formulas *are* the closed forms);
    the other built-ins go through ``_Side`` (closed form, no buffer from forward to
    backward: TAR's differences are not kept); custom callables through plain autograd."""
    scale = activity_scale(binding, h)
    coefficients = number_coefficients(binding.penalty)
    if coefficients is not None:
        return _norms(h, coefficients[0] * scale, coefficients[1] * scale)
    if closed_form(binding.penalty):
        return _Side.apply(h, binding, scale)
    return checked_value(binding, binding.penalty(h)) * scale


@dataclass
class Cell:
    """The gradient factor a step's ``penalty()`` received in backward (None until then)."""

    factor: torch.Tensor | None = None


class Capture(torch.autograd.Function):
    """Identity on the step's penalty that stores its incoming gradient in a ``Cell``
    (an ``anchor`` leaf makes the output require grad even when nothing else does)."""

    @staticmethod
    def forward(ctx: Any, total: torch.Tensor, anchor: torch.Tensor, cell: Cell) -> torch.Tensor:  # type: ignore[override]
        del anchor
        ctx.cell = cell
        return total.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        ctx.cell.factor = grad.detach()
        return grad, torch.zeros_like(grad), None


class _Late(torch.autograd.Function):
    """Identity on a recomputed output (reentrant checkpointing) whose backward adds the
    penalty's gradient, scaled by the factor its step's ``penalty()`` received."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, h: torch.Tensor, binding: ActivityBinding, scale: float, cell: Cell, warn: Any
    ) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.binding, ctx.scale, ctx.cell, ctx.warn = binding, scale, cell, warn
        return h.view_as(h)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (h,) = ctx.saved_tensors
        if ctx.cell.factor is None:  # the step's penalty() was not part of this backward
            ctx.warn()
            return grad, None, None, None, None
        extra = gradient_of(ctx.binding, h, ctx.cell.factor * ctx.scale)
        return grad + extra.to(grad.dtype), None, None, None, None


def late_activity(
    binding: ActivityBinding, h: torch.Tensor, cell: Cell, warn: Callable[[], None]
) -> torch.Tensor:
    """``h`` through ``_Late`` (see the module docstring)."""
    return _Late.apply(h, binding, activity_scale(binding, h), cell, warn)


@dataclass(eq=False)
class Record:
    """One recorded call: its token (its value, in the graph) and whether the forward's graph
    was already backpropagated without it (``spent``)."""

    binding: ActivityBinding
    token: torch.Tensor
    spent: bool = False


@dataclass(eq=False)
class Deferred:
    """A call recorded in the no-grad forward of reentrant checkpointing: its value now, its
    gradient when the checkpoint recomputes it in backward (``cell`` set by ``penalty()``)."""

    binding: ActivityBinding
    value: torch.Tensor
    cell: Cell = field(default_factory=Cell)


class SpentMarker:
    """Tensor hook on a recorded output: its graph is being backpropagated, so the record
    can no longer be penalised (holds the record weakly: no reference cycle)."""

    __slots__ = ("record",)

    def __init__(self, record: Record) -> None:
        self.record = weakref.ref(record)

    def __call__(self, grad: torch.Tensor) -> None:
        record = self.record()
        if record is not None:
            record.spent = True


class RecordingHook:
    """The forward hook ``attach`` registers on each module with an activity rule.

    A copy of the model (``copy.deepcopy``, ``AveragedModel``, pickling) carries a disabled
    hook: copies never feed the original's penalty (attach to the copy to regularize it).
    """

    __slots__ = ("binding", "handle")

    def __init__(self, handle: Any, binding: ActivityBinding) -> None:
        self.handle, self.binding = handle, binding

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if module is not self.binding.module or not module.training:
            return None  # a copy of the module, or evaluation
        return self.handle._record(self.binding, output)

    def __deepcopy__(self, memo: dict[int, Any]) -> DisabledHook:
        return DisabledHook()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return DisabledHook, ()


class DisabledHook:
    """What a copied model keeps in place of a ``RecordingHook``: nothing happens."""

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        return None
