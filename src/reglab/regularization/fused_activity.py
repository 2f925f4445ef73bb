"""The fused path of activity penalties (see ``reglab.regularization.activity`` for the
whole picture): a record's value computed at once without a graph, its closed-form gradient
added in the backward pass that already reads the output — by the step's ``Capture`` for
outputs still alive at ``penalty()`` (for ``L1`` on a ReLU output a stride-0 expansion that
autograd adds in place and ReLU's mask turns into ``l1 · 1[h > 0]``), by a tensor hook on
the output otherwise. A record keeps no tensor of its forward's graph.

One visible difference from the token path: ``h.grad`` of a ReLU output with an ``L1`` rule
(``retain_grad``) includes ``l1 · factor`` also where ``h = 0`` (ReLU's mask is applied by
ReLU's own backward, after it).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from reglab.penalties.norms import number_coefficients
from reglab.regularization.activity import (
    LOW_PRECISION,
    Cell,
    activity_scale,
    closed_form,
    gradient_of,
    value_of,
)
from reglab.regularization.rules import ActivityBinding

__all__ = [
    "CLOSED",
    "NORMS",
    "RELU",
    "Fused",
    "FusedGradient",
    "connect",
    "fused_kind",
    "fused_record",
]


#: How a fused record's gradient is computed: L1/L2/L1L2 with number coefficients in one or
#: two ops ("norms"; "relu" when ``h`` is a ReLU output and the L1 part needs no ``h``), any
#: other built-in through its closed form ("closed").
NORMS, RELU, CLOSED = "norms", "relu", "closed"


def _reads_h(kind: str, l1: float, l2: float) -> bool:
    """Whether the fused gradient reads ``h`` (a ReLU output's L1 part does not)."""
    if kind == CLOSED:
        return True
    return bool(l2) or (kind == NORMS and bool(l1))


def fused_kind(binding: ActivityBinding, h: torch.Tensor, hooks_active: bool) -> str | None:
    """How ``binding``'s penalty on ``h`` is fused (``NORMS``, ``RELU``, ``CLOSED``), or None
    for the token path: custom callables, outputs that are leaves, and any record while
    saved-tensor hooks are active (checkpointing, offloading decide what the graph keeps)."""
    if hooks_active or (h.requires_grad and h.grad_fn is None):
        return None
    coefficients = number_coefficients(binding.penalty)
    if coefficients is not None:
        relu = h.grad_fn is not None and h.grad_fn.name() == "ReluBackward0"
        return RELU if relu and coefficients[0] else NORMS
    return CLOSED if closed_form(binding.penalty) else None


def _norm_values(h: torch.Tensor, l1: float, l2: float, relu: bool) -> torch.Tensor:
    """``l1 · Σ|h| + l2 · Σh²`` of a detached ``h`` (float32 accumulation for half-precision
    outputs): ``Σh`` on a ReLU output (``h ≥ 0``), one read; ``Σh²`` as a dot product, one
    read. (``Σ|h|`` stays ``abs().sum()``: on CPU ``vector_norm(h, 1)`` is ~7× slower.)"""
    dtype = torch.float32 if h.dtype in LOW_PRECISION else None
    value = None
    if l1:  # on a ReLU output h >= 0: Σ|h| = Σh
        v = h.sum(dtype=dtype) if relu else h.abs().sum(dtype=dtype)
        value = l1 * v
    if l2:
        if dtype is None and h.is_contiguous() and h.numel():
            flat = h.view(-1)
            v = torch.dot(flat, flat)
        else:
            v = torch.linalg.vector_norm(h, 2, dtype=dtype).square()
        value = l2 * v if value is None else value + l2 * v
    return value if value is not None else h.new_zeros((), dtype=dtype or h.dtype)


@dataclass(eq=False)
class Fused:
    """A call recorded on the fused path (see the module docstring).

    ``value`` is detached; ``output`` holds the output weakly (torch keeps a tensor's Python
    object while autograd holds the tensor); ``data`` is a detached alias of the output where
    the gradient reads it (``None`` for L1 on a ReLU output). Nothing here holds the graph.
    """

    binding: ActivityBinding
    value: torch.Tensor
    kind: str
    scale: float
    l1: float = 0.0
    l2: float = 0.0
    output: Callable[[], torch.Tensor | None] = lambda: None
    #: The ``FusedGradient`` hook, weakly: autograd owns it, so it dies with the graph (the
    #: caller dropped the forward's output: no gradient can reach the model any more).
    hook: Callable[[], Any] | None = None
    data: torch.Tensor | None = None
    version: int = 0
    shape: tuple[int, ...] = ()
    dtype: torch.dtype = torch.float32
    cell: Cell | None = None
    connected: bool = False  # an input of its step's Capture, which adds its gradient
    spent: bool = False
    generation: int = 0  # the cell generation whose gradient was added

    @property
    def freed(self) -> bool:
        """The forward's graph is gone (its output was dropped): no gradient can reach it."""
        return self.hook is not None and self.hook() is None

    def check_version(self) -> None:
        """An in-place change of the output after the record is an error (as autograd's own
        saved tensors make it): the gradient needs the recorded values."""
        if self.data is not None and self.data._version != self.version:
            b = self.binding
            raise RuntimeError(
                f"reglab: the output of {b.module_name or '<root>'!r} ({type(b.module).__name__})"
                f" was modified in place after its activity penalty {b.penalty!r} was recorded; "
                "its gradient needs the recorded values. Make the in-place operation out of "
                "place (e.g. nn.ReLU(inplace=False) after it)."
            )

    def gradient(self, grad: torch.Tensor | None, factor: torch.Tensor) -> torch.Tensor | None:
        """``grad + factor · scale · ∇penalty(h)`` in as few ops as the penalty allows;
        ``grad`` None: the penalty's gradient alone (a stride-0 expansion for ReLU's L1)."""
        data = self.data
        if torch.is_grad_enabled() and (self.kind == CLOSED or self.l2):
            warn_second_order(self.binding)
        dtype = grad.dtype if grad is not None else self.dtype
        f = factor if factor.dtype == dtype else factor.to(dtype)
        if self.kind == CLOSED:
            extra = gradient_of(self.binding, data, factor * self.scale).to(f.dtype)  # type: ignore[arg-type]
            return extra if grad is None else grad + extra
        if self.l1:
            k = self.l1 * self.scale
            if self.kind == RELU:  # ReLU's backward multiplies by 1[h > 0] = sign(h)
                grad = f.mul(k).expand(self.shape) if grad is None else torch.add(grad, f, alpha=k)
            elif grad is None:
                grad = data.sign().mul_(f * k)  # type: ignore[union-attr]
            else:
                grad = torch.addcmul(grad, data.sign(), f, value=k)  # type: ignore[union-attr]
        if self.l2:
            k = 2.0 * self.l2 * self.scale
            grad = data.mul(f * k) if grad is None else torch.addcmul(grad, data, f, value=k)  # type: ignore[union-attr]
        return grad


class FusedGradient:
    """The tensor hook of a fused record whose output was not an input of its step's
    ``Capture`` (its Python object had died: nothing saves the output, yet the graph downstream
    lives): adds the gradient to the incoming one. Marks the record spent when the output is
    backpropagated before ``penalty()`` consumed it."""

    __slots__ = ("__weakref__", "record")

    def __init__(self, record: Fused) -> None:
        self.record = record

    def __call__(self, grad: torch.Tensor | None) -> torch.Tensor | None:
        record = self.record
        cell = record.cell
        if cell is None:  # backpropagated before penalty(): it can no longer be penalised
            record.spent = True
            return None
        factor = cell.factor
        if factor is None or record.generation == cell.generation or grad is None:
            return None  # not this step's penalty, or Capture added it already
        record.generation = cell.generation
        record.check_version()
        return record.gradient(grad, factor)


def warn_second_order(binding: ActivityBinding) -> None:
    warnings.warn(
        f"reglab: the fused activity penalty {binding.penalty!r} on "
        f"{binding.module_name or '<root>'!r} is differentiated twice (create_graph=True); "
        "its gradient treats the output as a constant, so the second derivative misses the "
        "penalty's curvature. Set reg.fused_activity = False for exact double backward.",
        RuntimeWarning,
        stacklevel=2,
    )


def fused_record(binding: ActivityBinding, h: torch.Tensor, kind: str) -> Fused:
    """Record ``binding``'s penalty on ``h`` on the fused path: its value now, its gradient
    through ``Capture`` or a ``FusedGradient`` hook on ``h`` (none when ``h`` needs none)."""
    scale = activity_scale(binding, h)
    l1 = l2 = 0.0
    if kind == CLOSED:
        value = value_of(binding, h, scale)
    else:
        l1, l2 = number_coefficients(binding.penalty)  # type: ignore[misc]
        # detach() rather than no_grad(): this runs once per recorded output, every step
        value = _norm_values(h.detach(), l1 * scale, l2 * scale, kind == RELU)
    record = Fused(binding, value, kind, scale, l1, l2)
    if h.requires_grad:
        record.output = weakref.ref(h)
        if _reads_h(kind, l1, l2):
            record.data, record.version = h.detach(), h._version
        record.shape, record.dtype = h.shape, h.dtype
        hook = FusedGradient(record)
        h.register_hook(hook)
        record.hook = weakref.ref(hook)
    return record


def connect(records: list[Fused]) -> list[torch.Tensor]:
    """The outputs of ``records`` still alive, as inputs for ``Capture`` (which then adds
    their gradients); marks those records ``connected``."""
    outputs = []
    for r in records:
        h = r.output()
        if h is not None and h.requires_grad:
            r.check_version()
            r.connected = True
            outputs.append(h)
    return outputs
