"""The removable handle returned by :func:`reglab.attach`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from reglab.penalties import Penalty
from reglab.regularization.fused import fused_penalties
from reglab.regularization.rules import ActivityBinding, Bindings

__all__ = ["Regularization"]


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor an activity penalty sees: the output, or the first tensor of a tuple/list
    (``nn.LSTM`` returns ``(output, (h_n, c_n))``: the per-step output is regularized)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return _first_tensor(output[0])
    return None


def _scale(binding: ActivityBinding, output: torch.Tensor) -> float:
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


class Regularization:
    """Penalties and constraints attached to a model; returned by :func:`reglab.attach`.

    Weight penalties are computed from the parameters' current values each time
    :meth:`penalty` is called. Activity penalties see the outputs recorded by forward hooks
    since the previous :meth:`penalty` call — only in training mode with gradients enabled,
    so ``model.eval()`` or ``torch.no_grad()`` forwards record nothing. Recorded outputs are
    released by :meth:`penalty`, so memory does not grow across steps.

    Use it as a context manager, or call :meth:`remove`, to detach every hook.
    """

    def __init__(self, model: nn.Module, bindings: Bindings) -> None:
        self.model = model
        self.bindings = bindings
        self._records: list[tuple[ActivityBinding, torch.Tensor]] = []
        self._terms: dict[str, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = [
            binding.module.register_forward_hook(self._recorder(binding))
            for binding in bindings.activities
        ]

    # -- recording ---------------------------------------------------------------------------
    def _recorder(self, binding: ActivityBinding) -> Callable[..., None]:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if module.training and torch.is_grad_enabled():
                tensor = _first_tensor(output)
                if tensor is not None:
                    self._records.append((binding, tensor))

        return hook

    # -- the loss term -----------------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """Sum of every attached penalty, as a 0-dim tensor to add to the loss.

        Weight terms use the current parameters; activity terms use (and release) the outputs
        recorded since the last call. Built-in penalties are folded into one autograd node with
        closed-form gradients; custom callables go through ordinary autograd. Per-term values
        are kept for :meth:`terms`.
        """
        records, self._records = self._records, []
        entries: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], float, torch.Tensor]]
        entries = [(b.term, b.penalty, 1.0, b.param) for b in self.bindings.weights]
        entries += [(b.term, b.penalty, _scale(b, out), out) for b, out in records]

        fast = [e for e in entries if isinstance(e[1], Penalty) and e[1].has_closed_form()]
        slow = [e for e in entries if not (isinstance(e[1], Penalty) and e[1].has_closed_form())]
        values: list[tuple[str, torch.Tensor]] = []
        total: torch.Tensor | None = None
        if fast:
            vector = fused_penalties([(e[1], e[2]) for e in fast], [e[3] for e in fast])
            total = vector.sum()
            values += zip([e[0] for e in fast], vector.detach().unbind(), strict=True)
        for term, fn, scale, tensor in slow:
            value = fn(tensor) * scale
            total = value if total is None else total + value
            values.append((term, value.detach()))

        self._terms = {}
        for term, value in values:
            self._terms[term] = self._terms[term] + value if term in self._terms else value
        if total is None:
            return torch.zeros((), device=self._device())
        return total

    def terms(self) -> dict[str, torch.Tensor]:
        """Detached per-term values of the last :meth:`penalty` call, for logging.

        Keys are ``"<module name>.<kind>"`` (``"encoder.0.kernel"``, ``"encoder.1.activity"``);
        a module's several kernels (``nn.LSTM``) or several calls in one step are summed.
        """
        return dict(self._terms)

    # -- constraints -------------------------------------------------------------------------
    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Project every constrained parameter in place (call after ``optimizer.step()``)."""
        for binding in self.bindings.constraints:
            binding.param.copy_(binding.constraint(binding.param))

    def after_step(self) -> None:
        """Called by :func:`reglab.training.fit` after every optimizer step: applies the
        constraints (projections are idempotent, so an extra ``bind`` does no harm)."""
        self.apply_constraints()

    def bind(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Run :meth:`apply_constraints` after every ``optimizer.step()``.

        Returns the hook's handle; :meth:`remove` also removes it.
        """
        handle = optimizer.register_step_post_hook(lambda *_: self.apply_constraints())
        self._handles.append(handle)
        return handle

    # -- lifetime ----------------------------------------------------------------------------
    def remove(self) -> None:
        """Detach every forward hook and optimizer hook, and drop recorded outputs."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._records.clear()

    def __enter__(self) -> Regularization:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _device(self) -> torch.device:
        param = next(iter(self.model.parameters()), None)
        return param.device if param is not None else torch.device("cpu")

    def __iter__(self) -> Iterator[str]:
        for b in self.bindings.weights:
            yield f"{b.param_name}: {b.penalty!r}"
        for a in self.bindings.activities:
            yield f"{a.module_name or '<root>'} output: {a.penalty!r} (reduction={a.reduction})"
        for c in self.bindings.constraints:
            yield f"{c.param_name}: {c.constraint!r} after each step"

    def __repr__(self) -> str:
        lines = "".join(f"\n  {line}" for line in self)
        return f"Regularization({type(self.model).__name__}){lines}"
