"""Activity penalties: the value of a module's output, recorded where the output is made.

When a hooked module runs in training mode with gradients enabled, the penalty of its output
``h`` is recorded in one of two ways.

**Fused** (eager, every built-in penalty): the value is computed at once, without a graph (a
detached 0-dim tensor, before anything downstream can modify ``h`` in place), and a tensor hook
on ``h`` adds the closed-form gradient to ``h``'s incoming gradient in the same backward pass,
in one op where the penalty allows it:

* ``L1`` on a ReLU output (``h.grad_fn`` is ReLU's): ``grad + k`` with ``k = factor·l1·scale``.
  ReLU's own backward multiplies by ``1[h > 0]``, which *is* ``sign(h)`` for ``h ≥ 0``, so
  nothing of ``h`` is read or kept.
* ``L2``: ``addcmul(grad, h, k)`` with ``k = 2·factor·l2·scale``; ``L1`` elsewhere:
  ``addcmul(grad, sign(h), k)``; other built-ins: ``grad + factor·scale·gradient(h)``.

``penalty()`` adds the detached values to the loss through ``Capture``, an identity whose
backward stores the gradient factor it receives (a loss scale, a ``1/k`` of gradient
accumulation) in a ``Cell`` that the hooks read. ``Capture`` is created after the forward, so
autograd (which runs ready nodes newest first) runs it before any node of the forward. The
record keeps no tensor of the forward's graph: a forward whose output the caller drops is freed
at once, whether or not ``penalty()`` is ever called. The hook keeps ``h`` (a detached alias of
the storage the graph keeps anyway) only where the gradient reads it.

**Token** (under ``torch.compile``, under saved-tensor hooks such as non-reentrant activation
checkpointing or ``save_on_cpu`` for penalties that read ``h``, for custom callables, and with
``Regularization.fused_activity = False``): ``h`` feeds a small side node of the autograd graph
whose forward is the penalty's value (a 0-dim *token*) and whose backward is the penalty's
gradient: native reductions for L1/L2/L1L2, ``_Side`` (closed form, no buffer) for the other
built-ins, plain autograd for custom callables. ``penalty()`` sums the tokens; each token keeps
its forward's graph alive until then.

The fused gradient treats ``h`` as a constant in a *second* derivative (``create_graph=True``):
exact for L1 (whose second derivative is 0), it misses L2's curvature ``2·l2``; a hook that
finds itself differentiated for a penalty with curvature warns once (set ``fused_activity =
False`` for exact double backward).

Forwards that are not ordinary ones:

* **Recomputation by activation checkpointing** runs inside backward and never records.
  Non-reentrant checkpointing replays the token node when the forward used one (its saved
  tensor is part of what the checkpoint matches) and discards the token; a fused record saved
  nothing and its recomputation does nothing. Reentrant checkpointing (``use_reentrant=True``)
  runs the first forward under ``no_grad``: the value is recorded then (``Deferred``), and the
  recomputation in backward wraps the recomputed output in an identity node that adds the
  gradient, scaled by the factor the step's ``penalty()`` received.
* A forward whose graph is backpropagated before ``penalty`` consumed its record (a
  saliency map, an accumulation loop that adds the penalty after backward) marks the record
  *spent*; it is then skipped with a warning instead of failing with "backward through the
  graph a second time" (token) or losing its gradient silently (fused).
* Tracing (``torch.jit.trace``) cannot record a Python hook into the traced graph: an activity
  rule's module running under the tracer is an error (the traced model would be
  unregularized).
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

from reglab._validation import InvalidParameterError
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

LOW_PRECISION = (torch.float16, torch.bfloat16)
_REENTRANT_FORWARD = torch.utils.checkpoint.CheckpointFunction.forward.__code__
#: The backward node of reentrant checkpointing, whose recomputation runs module forwards.
REENTRANT_BACKWARD = "CheckpointFunctionBackward"


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Sums of squares overflow half precision: evaluate penalties in float32 at least."""
    return t.float() if t.dtype in LOW_PRECISION else t


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
        # (Read from the instance's __dict__ first: nn.Module.__getattr__ on a miss raises
        # inside getattr's default, several microseconds per recorded output.)
        module = binding.module
        batch_dim = module.__dict__.get("reglab_batch_dim")
        if batch_dim is None:
            batch_dim = getattr(type(module), "reglab_batch_dim", 0)
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
    low = h.dtype in LOW_PRECISION
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


@dataclass(eq=False)
class Cell:
    """The gradient factor a step's ``penalty()`` received in backward (None until then), and
    how many backward passes have set it (``generation``): a retained graph backpropagated
    again *without* the penalty must not add its gradient a second time."""

    factor: torch.Tensor | None = None
    generation: int = 0


class Capture(torch.autograd.Function):
    """Identity on the step's penalty that stores its incoming gradient in a ``Cell``
    (an ``anchor`` leaf makes the output require grad even when nothing else does), and adds
    the gradients of the fused records whose outputs it takes as inputs: for ReLU's L1 a
    stride-0 expansion, which autograd adds into the output's gradient buffer in place."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        total: torch.Tensor,
        anchor: torch.Tensor,
        cell: Cell,
        records: list[Any],  # fused records (reglab.regularization.fused_activity)
        *outputs: torch.Tensor,
    ) -> torch.Tensor:
        del anchor, outputs
        ctx.cell, ctx.records = cell, records
        return total.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cell = ctx.cell
        cell.factor = grad.detach()
        cell.generation += 1
        grads = []
        for record in ctx.records:
            record.generation = cell.generation
            grads.append(record.gradient(None, cell.factor))
        # The anchor gets no gradient (None: nothing to accumulate into its .grad).
        return (grad, None, None, None, *grads)


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


class ScriptingRefused(InvalidParameterError, AttributeError):
    """``torch.jit.script`` of a model whose modules have activity rules."""


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

    @property
    def __name__(self) -> str:
        # torch.jit.script compiles a module's forward hooks and starts by reading their
        # names: refuse with the reason instead of an AttributeError about a name. (An
        # AttributeError still, so getattr(hook, "__name__", default) keeps working.)
        raise ScriptingRefused(
            f"The activity rule on {self.binding.module_name or '<root>'!r} "
            f"({type(self.binding.module).__name__}) cannot be scripted: a TorchScript graph "
            "never calls the Python hook that records the penalty, so it would silently be 0. "
            "Script the model after reg.remove()."
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> DisabledHook:
        return DisabledHook()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return DisabledHook, ()


class DisabledHook:
    """What a copied model keeps in place of a ``RecordingHook``: nothing happens."""

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        return None
