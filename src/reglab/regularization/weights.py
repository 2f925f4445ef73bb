"""Weight penalties of one handle, evaluated together with multi-tensor ops.

Bindings are grouped once per change of the parameters (identity, dtype, device):

* **Elementwise** groups — ``L1``, ``L2``, ``L1L2`` with number coefficients, one group per
  (penalty, dtype, device) — evaluate values and closed-form gradients with
  ``torch._foreach_*`` ops, so the number of kernel launches does not grow with the number of
  penalised tensors. A group reads its penalty's coefficients from two 0-dim tensors that are
  refreshed in place when the penalty's attributes change (by hand or by a
  ``reglab.schedules`` schedule), so a changing coefficient is neither stale nor baked into a
  ``torch.compile`` graph.
* **Per-tensor** groups: every other built-in penalty with a closed form (``ExpAbs``,
  ``Orthogonal`` on the module's output units, ``ToReference`` toward a fixed reference, per-
  member coefficients of a ``ModelStack``).
* **Autograd**: custom callables (and soft tying, whose reference requires grad) go through
  ordinary autograd.

Two ways to apply the closed forms: ``WeightPenalties.loss_term`` (one autograd node whose
backward writes ``grad_output · ∇``, exact under loss scaling and accumulation) and
``WeightPenalties.add_gradients_`` (in place into ``.grad``, for
``Regularization.fold_into``).

Sharded parameters (``torch.distributed`` ``DTensor``, e.g. FSDP2's ``fully_shard``) are
supported for elementwise penalties: each rank penalises its local shard (whose gradient is
exactly the shard of the full gradient) and values are summed over the mesh, so every rank sees
the unsharded value.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reglab._internals.compat import foreach_norm
from reglab._validation import InvalidParameterError
from reglab.penalties import Penalty
from reglab.penalties.norms import number_coefficients
from reglab.regularization.rules import WeightBinding, checked_value
from reglab.regularization.sharding import is_sharded as _is_sharded
from reglab.regularization.sharding import local as _local

__all__ = ["WeightPenalties", "refresh_coefficients"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


#: CPU eager: tensors of at least this many elements take the cache-blocked loops. Every pass
#: over a large tensor is a trip to main memory there, so the ops of one penalty run block by
#: block (a block, its scratch and its gradient stay in cache) and a tensor is read once.
#: Smaller tensors are many and cheap: multi-tensor ops keep their Python overhead down.
BLOCK = 1 << 18


def _blocks(*tensors: torch.Tensor) -> Any:
    flat = [t.view(-1) for t in tensors]
    for start in range(0, flat[0].numel(), BLOCK):
        yield [f[start : start + BLOCK] for f in flat]


def _signs(ws: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``sign(w)`` of each tensor: one multi-tensor op in eager mode. Compiled, the same
    values as two selects: inductor's CPU code for ``sign`` is several times slower inside a
    fused optimizer update (measured: 0.49 vs 0.14 ms on a 1.9M-parameter Adam step)."""
    if not torch.compiler.is_compiling():
        return list(torch._foreach_sign(ws))
    return [torch.where(w > 0, 1.0, torch.where(w < 0, -1.0, 0.0)).to(w.dtype) for w in ws]


@dataclass(frozen=True)
class _Elementwise:
    """``l1 · Σ|w| + l2 · Σw²`` over several same-dtype, same-device tensors with multi-tensor
    ``torch._foreach_*`` ops: the launch count does not grow with the number of tensors.

    ``has_l1`` / ``has_l2`` say which terms exist (fixed for the group: a coefficient that
    crosses zero rebuilds the plan); their values live in ``l1_t`` / ``l2_t`` (0-dim tensors
    that compiled graphs read) and ``current`` (the same as Python floats, for the eager CPU
    loops and the folded path), refreshed in place by :meth:`refresh`."""

    index: tuple[int, ...]
    penalty: Any
    has_l1: bool
    has_l2: bool
    l1_t: torch.Tensor
    l2_t: torch.Tensor
    current: list[float]

    @classmethod
    def of(cls, index: Sequence[int], penalty: Any, like: torch.Tensor, **extra: Any) -> Any:
        l1, l2 = number_coefficients(penalty)  # type: ignore[misc]
        acc = _acc_dtype(like.dtype)
        return cls(
            tuple(index),
            penalty,
            l1 != 0,
            l2 != 0,
            torch.tensor(l1, dtype=acc, device=like.device),
            torch.tensor(l2, dtype=acc, device=like.device),
            [l1, l2],
            **extra,
        )

    def refresh(self) -> None:
        """Copy the penalty's coefficients into the group, if they changed."""
        now = list(number_coefficients(self.penalty))  # type: ignore[arg-type]
        if now != self.current:
            self.current[:] = now
            self.l1_t.fill_(now[0])
            self.l2_t.fill_(now[1])

    def values(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        acc = _acc_dtype(ws[0].dtype)
        if not (self.has_l1 or self.has_l2):  # L1L2()'s default: a zero penalty
            return torch.zeros(len(ws), dtype=acc, device=ws[0].device)
        value: Any = 0.0
        if self.has_l2:
            value = torch.stack(foreach_norm(ws, 2, acc)).square() * self.l2_t
        if self.has_l1:
            if ws[0].device.type == "cpu":  # CPU's norm(ord=1) kernel is not vectorised
                l1s = torch.stack([a.sum(dtype=acc) for a in torch._foreach_abs(ws)])
            else:
                l1s = torch.stack(foreach_norm(ws, 1, acc))
            value = value + l1s * self.l1_t
        return value

    def values_and_gradients(self, ws: Sequence[torch.Tensor]) -> Any:
        del ws  # computed in backward, where the factor is known
        return None

    def gradients(self, ws: Sequence[torch.Tensor], factor: torch.Tensor) -> list[torch.Tensor]:
        """Fresh ``factor · ∇`` tensors (autograd takes them as the parameters' gradients)."""
        if not self.has_l1:  # 2 · l2 · w: one pass
            return list(torch._foreach_mul(ws, factor * 2.0 * self.l2_t.to(factor.dtype)))
        grads = _signs(ws)  # sign(0) = 0, as autograd's |w|
        torch._foreach_mul_(grads, factor * self.l1_t.to(factor.dtype))
        if self.has_l2:  # + 2 · l2 · w
            torch._foreach_add_(
                grads, torch._foreach_mul(ws, factor * 2.0 * self.l2_t.to(factor.dtype))
            )
        return grads

    def add_gradients_(
        self, grads: Sequence[torch.Tensor], ws: Sequence[torch.Tensor], factor: Any
    ) -> None:
        """``grad += factor · ∇`` in place (``factor`` a number or a 0-dim tensor)."""
        compiling = torch.compiler.is_compiling()
        if isinstance(factor, torch.Tensor) or compiling:
            # A loss scale that a fused optimizer divides out; or compiled code, which reads
            # the coefficients as tensors (no value baked into the graph).
            f = factor if isinstance(factor, torch.Tensor) else self.l1_t.new_tensor(factor)
            adds = self.gradients(ws, f)
            if not compiling:
                torch._foreach_add_(grads, adds)
                return
            # One add_ per tensor: with a multi-tensor add_ here, torch 2.13's inductor made
            # SGD's first momentum buffer (a clone of the gradient) the gradient tensor itself
            # (same storage), which breaks training once gradients are zeroed in place.
            for grad, add in zip(grads, adds, strict=True):
                grad.add_(add)
            return
        l1, l2 = self.current
        if not self.has_l1:  # no temporary at all
            torch._foreach_add_(grads, ws, alpha=2.0 * l2 * factor)
        else:
            signs = torch._foreach_sign(ws)
            torch._foreach_add_(grads, signs, alpha=l1 * factor)
            if self.has_l2:
                torch._foreach_add_(grads, ws, alpha=2.0 * l2 * factor)


@dataclass(frozen=True)
class _Blocked(_Elementwise):
    """The same penalty on large contiguous CPU tensors, cache-blocked, with one block-sized
    scratch buffer as the only temporary. Under ``torch.compile`` the multi-tensor forms run
    instead (the compiler fuses them). Coefficients are read as floats (``current``): on the
    CPU that costs no synchronisation."""

    def values(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        if torch.compiler.is_compiling() or not (self.has_l1 or self.has_l2):
            return super().values(ws)
        return torch.stack([self._value(w) for w in ws])

    def _value(self, w: torch.Tensor) -> torch.Tensor:
        # One trip through memory: both sums read each block while it is in cache.
        l1, l2 = self.current
        scratch = _scratch(w) if self.has_l1 else None
        squares, absolutes = [], []
        for (wb,) in _blocks(w):
            if self.has_l2:
                squares.append(torch.dot(wb, wb))
            if scratch is not None:
                absolutes.append(torch.abs(wb, out=scratch[: wb.numel()]).sum())
        value: Any = l2 * torch.stack(squares).sum() if squares else 0.0
        if absolutes:
            value = value + l1 * torch.stack(absolutes).sum()
        return value

    def values_and_gradients(
        self, ws: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """Values and unscaled gradients in one trip through memory (the gradient of L1 is
        ``sign(w)``, whose dot with ``w`` is the L1 value); None without an L1 term."""
        if torch.compiler.is_compiling() or not self.has_l1:
            return None
        l1, l2 = self.current
        values, grads = [], []
        for w in ws:
            out = torch.empty_like(w)
            parts = []
            for wb, ob in _blocks(w, out):
                torch.sign(wb, out=ob)
                parts.append(torch.dot(wb, ob) * l1)
                if self.has_l2:
                    parts.append(torch.dot(wb, wb) * l2)
                    ob.mul_(l1).add_(wb, alpha=2.0 * l2)
                else:
                    ob.mul_(l1)
            values.append(torch.stack(parts).sum())
            grads.append(out)
        return torch.stack(values), grads

    def gradients(self, ws: Sequence[torch.Tensor], factor: torch.Tensor) -> list[torch.Tensor]:
        if torch.compiler.is_compiling() or not self.has_l1:
            return super().gradients(ws, factor)
        l1, l2 = self.current
        f = float(factor)  # a CPU scalar: no synchronisation
        out = []
        for w in ws:
            grad = torch.empty_like(w)
            for wb, gb in _blocks(w, grad):
                torch.sign(wb, out=gb).mul_(l1 * f)
                if self.has_l2:
                    gb.add_(wb, alpha=2.0 * l2 * f)
            out.append(grad)
        return out

    def add_gradients_(
        self, grads: Sequence[torch.Tensor], ws: Sequence[torch.Tensor], factor: Any
    ) -> None:
        if isinstance(factor, torch.Tensor) or not self.has_l1 or torch.compiler.is_compiling():
            super().add_gradients_(grads, ws, factor)
            return
        l1, l2 = self.current
        for w, g in zip(ws, grads, strict=True):
            scratch = _scratch(w)
            for wb, gb in _blocks(w, g):
                sb = torch.sign(wb, out=scratch[: wb.numel()])
                gb.add_(sb, alpha=l1 * factor)
                if self.has_l2:
                    gb.add_(wb, alpha=2.0 * l2 * factor)


#: A group's small CPU tensors go through the blocked loops too (one block each) when there
#: are fewer than this many: a few per-tensor ops cost less than a multi-tensor group's fixed
#: overhead (measured on an MLP's 10 x 1024 output kernel); many take the multi-tensor ops.
FEW = 4


def _plain_cpu(p: torch.Tensor) -> bool:
    """A contiguous CPU tensor, summed in its own dtype (no half precision)."""
    return p.device.type == "cpu" and p.is_contiguous() and _acc_dtype(p.dtype) == p.dtype


def _blockable(p: torch.Tensor) -> bool:
    """A large contiguous CPU tensor, summed in its own dtype (no half precision)."""
    return _plain_cpu(p) and p.numel() >= BLOCK


_SCRATCH: dict[torch.dtype, torch.Tensor] = {}


def _scratch(like: torch.Tensor) -> torch.Tensor:
    """One reusable block-sized CPU buffer per dtype (the blocked loops' only temporary)."""
    buffer = _SCRATCH.get(like.dtype)
    if buffer is None:
        buffer = _SCRATCH[like.dtype] = torch.empty(BLOCK, dtype=like.dtype)
    return buffer


@dataclass(frozen=True)
class _PerTensor:
    """A built-in penalty with a closed-form gradient, one tensor at a time; per-unit
    penalties see the tensor as ``(units, ...)`` through the binding's layout."""

    index: tuple[int, ...]
    bindings: tuple[WeightBinding, ...]

    def values_and_gradients(self, ws: Sequence[torch.Tensor]) -> None:
        del ws  # gradients are computed in backward

    def _units(self, b: WeightBinding, w: torch.Tensor) -> torch.Tensor:
        return b.layout.to_units(w) if b.penalty.per_unit else w  # type: ignore[union-attr]

    def values(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack(
                [
                    b.penalty(self._units(b, _upcast(w))).to(_acc_dtype(w.dtype))
                    for b, w in zip(self.bindings, ws, strict=True)
                ]
            )

    def _gradient(self, b: WeightBinding, w: torch.Tensor, factor: Any) -> torch.Tensor:
        """``factor · ∇penalty(w)``, a fresh tensor in ``w``'s layout and dtype."""
        grad = b.penalty.gradient(self._units(b, _upcast(w)))  # type: ignore[union-attr]
        if b.penalty.per_unit:  # type: ignore[union-attr]
            grad = b.layout.from_units(grad, w)
        return grad.mul_(factor).to(w.dtype)

    def gradients(self, ws: Sequence[torch.Tensor], factor: torch.Tensor) -> list[torch.Tensor]:
        return [self._gradient(b, w, factor) for b, w in zip(self.bindings, ws, strict=True)]

    def add_gradients_(
        self, grads: Sequence[torch.Tensor], ws: Sequence[torch.Tensor], factor: Any
    ) -> None:
        for b, grad, w in zip(self.bindings, grads, ws, strict=True):
            if b.penalty.per_unit or w.dtype in _LOW_PRECISION:  # type: ignore[union-attr]
                grad.add_(self._gradient(b, w, factor))
            else:  # in place: per-member norms skip members whose coefficients are zero
                b.penalty.add_gradient_(grad, w, factor)  # type: ignore[union-attr]


def _upcast(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in _LOW_PRECISION else t


@dataclass(frozen=True)
class _ShardedElementwise(_Elementwise):
    """An elementwise group of DTensor local shards: values are summed over the mesh."""

    mesh: Any = None

    def values(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        import torch.distributed as dist

        local = super().values(ws)
        dist.all_reduce(local, group=self.mesh.get_group())  # type: ignore[attr-defined]
        return local


class _Plan:
    """The groups of one set of parameter tensors. ``order`` lists the closed-form bindings
    in the order their values come out (group by group), ``terms`` their names."""

    def __init__(self, groups: list[Any], n: int, terms: list[str]) -> None:
        self.groups = groups
        self.n = n
        self.order = [i for g in groups for i in g.index]
        self.terms = [terms[i] for i in self.order]

    def refresh(self) -> None:
        for g in self.groups:
            if isinstance(g, _Elementwise):
                g.refresh()

    def values(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.forward(ws, keep_gradients=False)[0]

    def forward(
        self, ws: Sequence[torch.Tensor], keep_gradients: bool
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Values in plan order, and the gradients computed on the way (CPU eager
        elementwise groups, when a backward will follow), by tensor position."""
        parts, held = [], {}
        for g in self.groups:
            group_ws = [ws[i] for i in g.index]
            both = g.values_and_gradients(group_ws) if keep_gradients else None
            if both is None:
                parts.append(g.values(group_ws))
            else:
                parts.append(both[0])
                held.update(zip(g.index, both[1], strict=True))
        dtype = parts[0].dtype
        for p in parts[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        values = torch.cat([p.to(dtype) for p in parts]) if len(parts) > 1 else parts[0]
        return values, held

    def gradients(
        self, ws: Sequence[torch.Tensor], factor: torch.Tensor, held: dict[int, torch.Tensor]
    ) -> list[torch.Tensor]:
        out: list[Any] = [None] * self.n
        if held:
            # Held gradients live on the CPU, where reading the factor costs nothing: skip a
            # pass over them in the usual case of no loss scaling.
            f = float(factor)
            for i, grad in held.items():
                out[i] = grad if f == 1.0 else grad.mul_(f)
        for g in self.groups:
            if all(i in held for i in g.index):
                continue
            for i, grad in zip(g.index, g.gradients([ws[i] for i in g.index], factor), strict=True):
                out[i] = grad
        return out


class _Node(torch.autograd.Function):
    """(total, values in plan order) of the closed-form groups; backward writes
    ``grad_total · ∇`` for every tensor. On CPU eager the elementwise gradients are computed
    with the values in forward (one trip through memory) and kept until backward; elsewhere
    backward computes them (multi-tensor ops, no ``.item()``: safe under ``torch.compile``)."""

    @staticmethod
    def forward(ctx: Any, plan: _Plan, *ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        values, held = plan.forward(ws, keep_gradients=any(ctx.needs_input_grad[1:]))
        ctx.plan, ctx.held = plan, held
        ctx.save_for_backward(*ws)
        ctx.mark_non_differentiable(values)
        return values.sum(), values

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor, _grad_values: Any) -> tuple[Any, ...]:
        held, ctx.held = ctx.held, {}  # backward runs once: release the gradients
        return (None, *ctx.plan.gradients(ctx.saved_tensors, grad_total, held))


class WeightPenalties:
    """The weight bindings of one ``Regularization``, grouped for evaluation."""

    def __init__(self, bindings: Sequence[WeightBinding]) -> None:
        self.bindings = tuple(bindings)
        self.closed = [b for b in self.bindings if _closed(b.penalty)]
        self.autograd = [b for b in self.bindings if not _closed(b.penalty)]
        # What the plan was built for: each parameter (held, compared with ``is``: dynamo
        # before torch 2.5 cannot trace ``id`` of a tensor) with its dtype and device, and
        # which coefficients were non-zero (None: built under compile, rebuilt in eager).
        self._built_for: list[tuple[torch.Tensor, torch.dtype, torch.device]] | None = None
        self._nonzero: tuple[Any, ...] | None = None
        self._plan: _Plan | None = None
        self._current()  # built eagerly: compiled code then reads the groups' coefficients
        _LIVE.add(self)

    def _current(self) -> tuple[list[torch.Tensor], _Plan | None]:
        """The closed-form bindings' trainable parameters now, and their (cached) plan, whose
        coefficients are refreshed from the penalties (in eager mode; compiled code reads
        them as they were last refreshed: see :func:`refresh_coefficients`).

        A parameter frozen after ``attach`` (``requires_grad_(False)``) is left out while it
        is frozen — no value, no gradient on any path — as Keras penalises only trainable
        weights; unfreezing it brings it back."""
        live = [b for b in self.closed if b.param.requires_grad]
        params = [b.param for b in live]
        same = self._built_for is not None and _same_tensors(params, self._built_for)
        if torch.compiler.is_compiling():
            # Never read the coefficients here: dynamo would guard on (or fail over) every
            # value. The plan was built in eager mode; its coefficient tensors are inputs.
            if not same:
                self._plan = self._build(live, params) if params else None
                self._built_for = [(p, p.dtype, p.device) for p in params]
                self._nonzero = None
            return params, self._plan
        nonzero = tuple(_nonzero(b.penalty) for b in live)  # which terms exist
        if not same or nonzero != self._nonzero:
            self._plan = self._build(live, params) if params else None
            self._built_for = [(p, p.dtype, p.device) for p in params]
            self._nonzero = nonzero
        if self._plan is not None:
            self._plan.refresh()
        return params, self._plan

    def refresh(self) -> None:
        """Rebuild the plan if the parameters changed and copy the penalties' coefficients
        into its tensors (what compiled code reads)."""
        self._current()

    def _build(self, bindings: Sequence[WeightBinding], params: Sequence[torch.Tensor]) -> _Plan:
        elementwise: dict[tuple[Any, ...], list[int]] = {}
        meshes: dict[int, Any] = {}
        per_tensor: list[int] = []
        for i, (b, p) in enumerate(zip(bindings, params, strict=True)):
            if number_coefficients(b.penalty) is None:
                if _is_sharded(p):
                    raise InvalidParameterError(
                        f"{b.param_name} is sharded (a DTensor, e.g. under FSDP2's "
                        f"fully_shard), and {b.penalty!r} is not elementwise: its value needs "
                        "the whole tensor. Sharded parameters take L1, L2 and L1L2 penalties."
                    )
                per_tensor.append(i)
                continue
            mesh = p.device_mesh if _is_sharded(p) else None  # type: ignore[attr-defined]
            meshes[id(mesh)] = mesh
            blocked = mesh is None and _blockable(p)
            # One group per penalty object: its coefficients may change (a schedule).
            key = (id(b.penalty), p.dtype, _local(p.detach()).device, id(mesh), blocked)
            elementwise.setdefault(key, []).append(i)
        for key, index in list(elementwise.items()):  # a few small CPU tensors: per tensor
            *group, mesh_id, blocked = key
            if blocked or meshes[mesh_id] is not None or len(index) >= FEW:
                continue
            if all(_plain_cpu(params[i]) for i in index):
                del elementwise[key]
                elementwise.setdefault((*group, mesh_id, True), []).extend(index)
        groups: list[Any] = []
        for (_penalty, _dtype, _device, mesh_id, blocked), index in elementwise.items():
            mesh = meshes[mesh_id]
            penalty = bindings[index[0]].penalty
            like = _local(params[index[0]].detach())
            if mesh is not None:
                groups.append(_ShardedElementwise.of(index, penalty, like, mesh=mesh))
            else:
                groups.append((_Blocked if blocked else _Elementwise).of(index, penalty, like))
        if per_tensor:
            groups.append(_PerTensor(tuple(per_tensor), tuple(bindings[i] for i in per_tensor)))
        return _Plan(groups, len(params), [b.term for b in bindings])

    # -- the loss path -----------------------------------------------------------------------
    def loss_term(
        self, include_closed: bool = True
    ) -> tuple[torch.Tensor | None, list[tuple[str, torch.Tensor]]]:
        """``(total, [(term, detached value), ...])``: the total is differentiable; closed
        forms go through one node, custom callables through autograd. With
        ``include_closed=False`` (folded into an optimizer) only the autograd ones count."""
        total: torch.Tensor | None = None
        values: list[tuple[str, torch.Tensor]] = []
        if include_closed and self.closed:
            params, plan = self._current()
            if plan is not None:
                node_total, node_values = _Node.apply(plan, *[_local(p) for p in params])
                total = node_total
                values += zip(plan.terms, node_values.unbind(), strict=True)
        for b in self.autograd:
            w = b.param
            if not w.requires_grad:  # frozen after attach: not penalised while frozen
                continue
            value = checked_value(b, b.penalty(b.layout.to_units(w) if _per_unit(b.penalty) else w))
            total = value if total is None else total + value
            values.append((b.term, value.detach()))
        return total, values

    # -- folded into the optimizer -----------------------------------------------------------
    @torch.no_grad()
    def values(self) -> list[tuple[str, torch.Tensor]]:
        """Detached values of the closed-form bindings at the current weights."""
        if not self.closed:
            return []
        params, plan = self._current()
        if plan is None:  # every penalised parameter is frozen
            return []
        vector = plan.values([_local(p) for p in params])
        return list(zip(plan.terms, vector.unbind(), strict=True))

    @torch.no_grad()
    def add_gradients_(self, factor: Any = 1.0) -> None:
        """``p.grad += factor · ∇penalty(p)`` for every closed-form binding (a missing
        ``.grad`` becomes the penalty's gradient, as backward would make it). Frozen
        parameters get none (see :meth:`_current`)."""
        if not self.closed:
            return
        params, plan = self._current()
        if plan is None:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for g in plan.groups:
            ws = [_local(params[i]) for i in g.index]
            grads = [_local(params[i].grad) for i in g.index]  # type: ignore[arg-type]
            g.add_gradients_(grads, ws, factor)

    def parameters(self) -> list[torch.Tensor]:
        return [b.param for b in self.closed]


#: Every live ``WeightPenalties``, so that a schedule can refresh the coefficient tensors
#: that compiled graphs read (weakly held: a removed handle goes away).
_LIVE: weakref.WeakSet[WeightPenalties] = weakref.WeakSet()


def refresh_coefficients() -> None:
    """Re-read every attached L1 / L2 / L1L2 penalty's coefficients into the tensors its
    group computes with (and rebuild a plan when a coefficient became zero or non-zero).

    Eager code does this by itself each step; call it after changing a coefficient by hand
    when the loss is computed by a ``torch.compile``'d function (schedules call it for you)."""
    for weights in list(_LIVE):
        weights.refresh()


def _same_tensors(
    params: Sequence[torch.Tensor], built_for: Sequence[tuple[torch.Tensor, Any, Any]]
) -> bool:
    """Whether ``params`` are the very tensors (same objects, dtypes, devices) of ``built_for``."""
    return len(params) == len(built_for) and all(
        p is q and p.dtype == dtype and p.device == device
        for p, (q, dtype, device) in zip(params, built_for, strict=True)
    )


def _nonzero(penalty: Any) -> tuple[bool, bool] | None:
    coefficients = number_coefficients(penalty)
    return None if coefficients is None else (coefficients[0] != 0, coefficients[1] != 0)


def _closed(penalty: Any) -> bool:
    return isinstance(penalty, Penalty) and penalty.has_closed_form()


def _per_unit(penalty: Any) -> bool:
    return isinstance(penalty, Penalty) and penalty.per_unit
