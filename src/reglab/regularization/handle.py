"""The removable handle returned by ``reglab.attach``."""

from __future__ import annotations

import contextlib
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from reglab._internals.torch import current_autograd_node, saved_tensors_hooks_active
from reglab._validation import InvalidParameterError, check_positive_int
from reglab.constraints._base import Constraint, beyond_rounding
from reglab.regularization.activity import (
    REENTRANT_BACKWARD,
    Capture,
    Cell,
    Deferred,
    Record,
    RecordingHook,
    SpentMarker,
    activity_scale,
    first_tensor,
    in_reentrant_checkpoint,
    late_activity,
    replace_first_tensor,
    token,
    value_of,
)
from reglab.regularization.folding import FoldHandle
from reglab.regularization.fused_activity import Fused, connect, fused_kind, fused_record
from reglab.regularization.rules import ActivityBinding, Bindings
from reglab.regularization.sharding import is_sharded, project_shard
from reglab.regularization.tracking import Structure
from reglab.regularization.weights import WeightPenalties

__all__ = ["Regularization"]

#: Default bound on recorded outputs kept between penalty() calls: the outputs of this many
#: forwards (at least 64).
PENDING_FORWARDS = 8


def _compiling() -> bool:
    return torch.compiler.is_compiling()


class Regularization:
    """Penalties and constraints attached to a model; returned by ``reglab.attach``.

    **Weight penalties** are evaluated from the parameters' current values each time
    ``penalty`` is called — built-in ones grouped into multi-tensor ops with closed-form
    gradients — or, after ``fold_into``, added to the gradients inside the optimizer step.

    **Activity penalties** are recorded where the output is produced: a hooked module's forward,
    in training mode with gradients enabled, computes the penalty's value right away; in eager
    mode every built-in penalty is *fused*: its closed-form gradient is added to the output's
    gradient by a hook in the same backward pass (for ``L1`` on a ReLU output, one add that
    ReLU's own mask turns into ``l1 · 1[h > 0]``), and the record keeps no tensor of the
    forward's graph. ``penalty`` adds the values recorded since the previous call.
    ``model.eval()``, ``torch.no_grad()`` and ``paused`` forwards record nothing;
    recomputation by activation checkpointing never records twice (see
    ``reglab.regularization.activity``). At most ``max_pending`` records wait for
    ``penalty``: beyond that the oldest are dropped, with one warning. Under
    ``torch.compile``, for custom callables, for penalties that read the output while
    saved-tensor hooks are active (checkpointing, offloading) and with
    ``fused_activity = False``, a record is a token in the autograd graph instead, which keeps
    its forward's graph alive until ``penalty`` (or until dropped).

    Tracing (``torch.jit.trace``) a model whose modules have activity rules is an error, and
    so is an activity rule on a traced or scripted module: a compiled TorchScript graph never
    calls the hook, so the penalty would silently be 0.

    **Copies** of the model (``copy.deepcopy``, ``torch.optim.swa_utils.AveragedModel``,
    pickling) carry no regularization: their forwards record nothing here. Attach to a copy to
    regularize it.

    Use it as a context manager, or call ``remove``, to detach every hook.
    """

    def __init__(
        self,
        model: nn.Module,
        bindings: Bindings,
        max_pending: int | None = None,
        structure: Structure | None = None,
    ) -> None:
        self.model = model
        self.bindings = bindings
        #: Checks that the model still has the modules ``attach`` bound (see ``tracking``).
        self._structure = structure
        self.removed = False
        if max_pending is None:
            max_pending = max(64, PENDING_FORWARDS * len(bindings.activities))
        self.max_pending = check_positive_int(max_pending, "max_pending", "attach")
        self._weights = WeightPenalties(bindings.weights)
        self._pending: list[Record | Deferred | Fused] = []
        # Reentrant checkpointing: deferred records whose recomputation is still to come.
        self._awaiting: dict[int, deque[Deferred]] = {}
        self._anchor: torch.Tensor | None = None
        self._terms: list[tuple[str, torch.Tensor]] = []
        self._folded: torch.optim.Optimizer | None = None
        self._paused = 0
        #: Fuse built-in activity penalties' gradients into the output's backward (eager
        #: mode). ``False`` records every activity penalty as a token in the autograd graph:
        #: exact under double backward (``create_graph=True``) for penalties with curvature.
        self.fused_activity = True
        #: Record ``statistics`` (output sparsity, units projected); off by default
        #: because it costs a pass over each penalised output and constrained weight.
        self.monitoring = False
        self._zeros: dict[str, list[torch.Tensor]] = {}
        self._statistics: dict[str, torch.Tensor] = {}
        self._warned: set[str] = set()
        self._handles: list[Any] = [
            binding.module.register_forward_hook(RecordingHook(self, binding))
            for binding in bindings.activities
        ]

    # -- recording (called by RecordingHook) -------------------------------------------------
    def _record(self, binding: ActivityBinding, output: Any) -> Any:
        if self._paused:
            return None
        h = first_tensor(output)
        if h is None:
            raise InvalidParameterError(
                f"The activity rule on {binding.module_name or '<root>'!r} "
                f"({type(binding.module).__name__}) needs a tensor output (or a tuple, list or "
                f"mapping whose first item is one). Got {type(output).__name__}."
            )
        compiling = _compiling()
        if not compiling:
            if torch.jit.is_tracing():
                raise InvalidParameterError(_traced_message(binding, "runs under torch.jit.trace"))
            node = current_autograd_node()
            if node is not None:  # a forward inside backward: checkpoint recomputation
                return self._recomputed(binding, output, h, node.name())
            if not torch.is_grad_enabled():
                if in_reentrant_checkpoint():
                    scale = activity_scale(binding, h)
                    self._append(Deferred(binding, value_of(binding, h, scale)))
                return None
        elif not torch.is_grad_enabled():
            return None
        kind = self._fused_kind(binding, h) if not compiling else None
        if kind is not None:
            self._append(fused_record(binding, h, kind))
        else:
            record = Record(binding, token(binding, h))
            self._append(record)
            if h.requires_grad and not compiling:
                h.register_hook(SpentMarker(record))
        if self.monitoring:
            counts = self._zeros.setdefault(binding.module_name or "<root>", [])
            counts.append(torch.stack([(h.detach() == 0).sum(), torch.tensor(h.numel())]))
        return None

    def _fused_kind(self, binding: ActivityBinding, h: torch.Tensor) -> str | None:
        """How this eager record is fused, or None for a token (see ``activity``)."""
        if not self.fused_activity:
            return None
        return fused_kind(binding, h, saved_tensors_hooks_active())

    def _append(self, record: Record | Deferred | Fused) -> None:
        if len(self._pending) >= self.max_pending:
            del self._pending[0]
            self._warn_once(
                "pending",
                f"reglab: more than {self.max_pending} module outputs were recorded in training "
                "mode with gradients enabled without a penalty() call; the oldest are dropped "
                "to bound memory (a token record keeps its forward's graph alive; any record "
                "dropped is not penalised). Call reg.penalty() in "
                "every training step, run forwards that should not be regularized under "
                "model.eval(), torch.no_grad() or reg.paused(), or raise "
                "attach(max_pending=...) for more forwards per step.",
            )
        self._pending.append(record)

    def _recomputed(self, binding: ActivityBinding, output: Any, h: torch.Tensor, node: str) -> Any:
        if node == REENTRANT_BACKWARD:
            queue = self._awaiting.get(id(binding))
            if queue:
                deferred = queue.popleft()
                new = late_activity(binding, h, deferred.cell, self._warn_late)
                return replace_first_tensor(output, new)
            return None
        # Non-reentrant checkpointing matches saved tensors by position: replay the token
        # node exactly as in the forward, and drop the token. A fused record saved nothing.
        if torch.is_grad_enabled() and self._fused_kind(binding, h) is None:
            token(binding, h)
        return None

    def _warn_late(self) -> None:
        self._warn_once(
            "late",
            "reglab: the activity penalty of an output recomputed by reentrant activation "
            "checkpointing was not backpropagated with its step's penalty(); its gradient is "
            "not added. Add reg.penalty() to the loss that is backpropagated.",
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing inside the block (forwards that should not be regularized in
        training mode: a teacher pass, a saliency map).

        >>> import reglab
        >>> from reglab.penalties import L1
        >>> model = torch.nn.Linear(3, 3)
        >>> reg = reglab.attach(model, {"": dict(activity=L1(1.0))})
        >>> with reg.paused():
        ...     _ = model(torch.randn(2, 3))
        >>> reg.penalty().item()
        0.0
        """
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    # -- the loss term -----------------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """Sum of every attached penalty, as a 0-dim tensor to add to the loss.

        Weight terms use the current parameters (none of the closed-form ones after
        ``fold_into``: the optimizer adds them); activity terms are the tokens recorded
        since the last call. Per-term values are kept for ``terms``.

        Raises ``ModelChangedError`` if a module was replaced, removed or added (one that a
        rule matches) since ``attach``.
        """
        self._check_structure()
        records = list(self._pending)
        self._pending.clear()
        self._awaiting.clear()  # recomputations belong to the latest penalty()'s step
        total, values = self._weights.loss_term(include_closed=self._folded is None)
        tokens, deferred, fused, spent, freed = [], [], [], 0, 0
        for r in records:
            if isinstance(r, Deferred):
                deferred.append(r)
            elif r.spent:
                spent += 1
            elif isinstance(r, Fused):
                freed += r.freed
                fused.append(r)
                values.append((r.binding.term, r.value))
            else:
                tokens.append(r.token)
                values.append((r.binding.term, r.token.detach()))
        if spent:
            self._warn_once(
                "spent",
                f"reglab: {spent} recorded outputs were already backpropagated before "
                "penalty() was called, so they are not penalised. Add reg.penalty() to the "
                "loss of the forward that produced them (with gradient accumulation: to every "
                "micro-batch's loss), or run such forwards under reg.paused() or model.eval().",
            )
        if freed:
            self._warn_once(
                "freed",
                f"reglab: {freed} recorded outputs were freed (their forward's output was "
                "dropped) before penalty() was called: their values are in penalty(), but no "
                "gradient can reach the model through a graph that is gone. Call reg.penalty() "
                "in the step of the forward whose loss you backpropagate, and run other "
                "forwards under model.eval(), torch.no_grad() or reg.paused().",
            )
        if tokens:
            activity = torch.stack(tokens).sum() if len(tokens) > 1 else tokens[0]
            total = activity if total is None else total + activity.to(total.dtype)
        if deferred or fused:
            total = self._capture(total, deferred, fused)
            values += [(d.binding.term, d.value) for d in deferred]
        self._terms = values
        if self._zeros:
            for name, counts in self._zeros.items():
                zeros, total_count = torch.stack(counts).sum(0).unbind()
                self._statistics[f"sparsity/{name}"] = zeros.double() / total_count
            self._zeros = {}
        if total is None:
            return torch.zeros((), device=self._device())
        return total

    def _capture(
        self, total: torch.Tensor | None, deferred: list[Deferred], fused: list[Fused]
    ) -> torch.Tensor:
        """Add the values of fused and deferred (reentrant-checkpoint) records and route the
        gradient factor this penalty receives to their hooks and recomputations."""
        parts = [r.value for r in fused] + [d.value for d in deferred]
        dtype = parts[0].dtype
        for part in parts[1:]:
            dtype = torch.promote_types(dtype, part.dtype)
        constant = parts[0] if len(parts) == 1 else torch.stack([p.to(dtype) for p in parts]).sum()
        total = constant if total is None else total + constant.to(total.dtype)
        if self._anchor is None or self._anchor.device != total.device:
            self._anchor = torch.zeros((), device=total.device, requires_grad=True)
        cell = Cell()
        for r in fused:
            r.cell = cell
        outputs = connect(fused)
        for d in deferred:
            d.cell = cell
            self._awaiting.setdefault(id(d.binding), deque()).append(d)
        connected = [r for r in fused if r.connected]
        return Capture.apply(total, self._anchor, cell, connected, *outputs)

    def terms(self) -> dict[str, torch.Tensor]:
        """Detached per-term values of the last ``penalty`` call, for logging.

        Keys are ``"<module name>.<kind>"`` (``"encoder.0.kernel"``, ``"encoder.1.activity"``);
        a module's several kernels (``nn.LSTM``) or several calls in one step are summed.
        Weight terms folded into an optimizer are evaluated now, at the current weights.
        """
        values = list(self._terms)
        if self._folded is not None:
            values += self._weights.values()
        out: dict[str, torch.Tensor] = {}
        for term, value in values:
            out[term] = out[term] + value if term in out else value
        return out

    def statistics(self) -> dict[str, torch.Tensor]:
        """With ``monitoring`` on: ``sparsity/<module>``, the fraction of exactly-zero
        entries of each penalised output over the calls of the last ``penalty`` step, and
        ``projected/<parameter>``, how many output units (entries, for elementwise
        constraints) the last ``apply_constraints`` actually projected: units outside the
        constraint's set (``Constraint.violated``: a norm above ``MaxNorm``'s bound, not
        one that Keras' ``n / (n + 1e-7)`` factor merely rescales), or, for another
        callable, units it changed by more than rounding. Detached floating-point 0-dim
        tensors; empty with monitoring off."""
        return dict(self._statistics)

    # -- folding into the optimizer ----------------------------------------------------------
    def fold_into(self, optimizer: torch.optim.Optimizer, *, compile: bool = False) -> FoldHandle:
        """Add the built-in weight penalties' gradients inside ``optimizer.step()`` instead of
        through the loss.

        A step pre-hook writes ``grad += ∇penalty(w)`` with in-place multi-tensor ops just
        before the optimizer reads the gradients; ``penalty`` then returns the activity
        terms (and custom callables) only. Training is the same as adding the penalty to the
        loss (equal up to floating-point rounding) for every ``torch.optim`` optimizer, since
        each reads ``p.grad`` in its step:

        * **AMP**: ``GradScaler.step`` unscales the gradients before calling ``step()``, and
          skips it (and so the penalty) on a step with inf/NaN gradients; a fused optimizer
          that unscales inside its kernel gets the penalty multiplied by its ``grad_scale``.
        * **Gradient accumulation**: the penalty is added once per optimizer step — the same
          as adding it to each of k micro-batch losses divided by k.
        * **Constraints** (``bind``) still project after the step: gradient, step,
          projection.
        * **Gradient clipping** between ``backward()`` and ``step()`` no longer sees the
          penalty's gradient (it is added after).

        Weight terms stay available in ``terms``, evaluated when asked.

        Args:
            optimizer: the optimizer that steps every parameter with a weight penalty.
            compile: compile the penalty's gradient together with the optimizer's update
                (``torch.compile``), so that it rides in the update's own pass over each
                parameter instead of a pass of its own (see ``reglab.regularization.folding``
                for how ``step`` is replaced). The first step compiles (seconds; on the CPU
                it needs a C++ compiler). Give the optimizer a tensor ``lr`` when a scheduler
                changes it, or each new value recompiles. Not for ``fused=True`` or
                ``differentiable=True`` optimizers.

        Returns:
            A handle; ``handle.remove()`` (or ``remove``) returns to the loss path.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InvalidParameterError(
                "The 'optimizer' parameter of fold_into must be a torch.optim.Optimizer. Got "
                f"{type(optimizer).__name__} instead."
            )
        if not isinstance(compile, bool):
            raise InvalidParameterError(
                f"The 'compile' parameter of fold_into must be True or False. Got {compile!r}."
            )
        if self._folded is not None:
            raise InvalidParameterError(
                "This Regularization is already folded into an optimizer; remove that handle first."
            )
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [b.param_name for b in self._weights.closed if id(b.param) not in stepped]
        if missing:
            raise InvalidParameterError(
                f"fold_into: the optimizer does not update {', '.join(missing[:5])}, which "
                "have weight penalties; fold into the optimizer that steps them."
            )

        def unfold() -> None:
            self._folded = None

        handle = FoldHandle(
            self._weights, optimizer, compile, on_remove=unfold, check=self._check_structure
        )
        self._folded = optimizer
        self._handles.append(handle)
        return handle

    # -- constraints -------------------------------------------------------------------------
    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Project every constrained parameter in place (call after ``optimizer.step()``).

        Per-unit constraints with their default axis (``MaxNorm()``, ``UnitNorm()``, ...)
        project each output unit of the module's layout (see ``reglab.layouts``)."""
        self._check_structure()
        for binding in self.bindings.constraints:
            before = binding.param.detach().clone() if self.monitoring else None
            _project(binding)
            if before is not None:
                self._statistics[f"projected/{binding.param_name}"] = _changed_units(
                    binding, before
                )

    def after_step(self) -> None:
        """Called by ``reglab.training.fit`` after every optimizer step: applies the
        constraints (projections are idempotent, so an extra ``bind`` does no harm)."""
        self.apply_constraints()

    def bind(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Run ``apply_constraints`` after every ``optimizer.step()``.

        Returns the hook's handle; ``remove`` also removes it.
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
        self._pending.clear()
        self._awaiting.clear()
        self.removed = True

    def _check_structure(self) -> None:
        if self._structure is not None and not _compiling():
            self._structure.check()

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


def _traced_message(binding: ActivityBinding, what: str) -> str:
    return (
        f"The activity rule on {binding.module_name or '<root>'!r} "
        f"({type(binding.module).__name__}) cannot work when the module {what}: a TorchScript "
        "graph (torch.jit.trace or torch.jit.script) never calls the Python hook that records "
        "the penalty, so it would silently be 0. Train the plain nn.Module (eagerly or with "
        "torch.compile) and trace a copy (copy.deepcopy) or the model after reg.remove()."
    )


def _project(binding: Any) -> None:
    constraint, layout = binding.constraint, binding.layout

    def project(w: torch.Tensor) -> torch.Tensor:
        if getattr(constraint, "per_unit", False):
            return layout.from_units(constraint(layout.to_units(w)), w)
        return constraint(w)

    param = binding.param
    if is_sharded(param):
        project_shard(binding, project)
    else:
        param.copy_(project(param))


def _changed_units(binding: Any, before: torch.Tensor) -> torch.Tensor:
    """How many units (per-unit constraints) or entries the projection actually moved, as a
    float 0-dim tensor: those a reglab ``Constraint`` finds outside its set
    (``Constraint.violated``: Keras' ``n / (n + 1e-7)`` rescale of a unit within the
    bound does not count), and for any other callable those it changed by more than
    rounding."""
    after = binding.param.detach()
    if is_sharded(after):
        after, before = after.to_local(), before.to_local()
    constraint, per_unit = binding.constraint, getattr(binding.constraint, "per_unit", False)
    if per_unit:
        after, before = binding.layout.to_units(after), binding.layout.to_units(before)
    if isinstance(constraint, Constraint):
        moved = constraint.violated(before)
    else:
        moved = beyond_rounding(before, after)
    if per_unit:
        moved = moved.reshape(moved.shape[0], -1).any(1)
    return moved.sum(dtype=torch.float32)
