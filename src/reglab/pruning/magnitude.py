"""Magnitude pruning on top of ``torch.nn.utils.prune``: one-shot or gradual (Zhu & Gupta
2017), global or per layer, the third route to exact zeros next to proximal L1 and activity
L1."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from reglab._validation import InvalidParameterError, check_choice, check_positive_int, invalid

__all__ = ["MagnitudePruning", "cubic_sparsity", "magnitude_prune"]

SCOPES = ("global", "layer")
DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def cubic_sparsity(
    step: int, final: float, steps: int, begin: int = 0, initial: float = 0.0
) -> float:
    """Zhu & Gupta's (2017) schedule: ``s_t = s_f + (s_i − s_f)(1 − (t − t₀)/n)³`` for
    ``t₀ <= t <= t₀ + n``; ``s_i`` before, ``s_f`` after (and always with ``n = 0``).

    >>> cubic_sparsity(0, 0.9, 100), cubic_sparsity(50, 0.9, 100), cubic_sparsity(100, 0.9, 100)
    (0.0, 0.7875, 0.9)
    """
    if steps <= 0 or step >= begin + steps:  # one-shot, or the schedule is over
        return final
    if step <= begin:
        return initial
    return final + (initial - final) * (1.0 - (step - begin) / steps) ** 3


def _check_amount(amount: float, owner: str) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount <= 1:
        raise invalid("amount", owner, "a fraction in [0, 1]", amount)
    return float(amount)


def _targets(model: nn.Module, types: tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    found = [
        (n, m) for n, m in model.named_modules() if isinstance(m, types) and hasattr(m, "weight")
    ]
    if not found:
        raise InvalidParameterError(
            f"magnitude pruning found no module of type {', '.join(t.__name__ for t in types)} "
            f"with a weight in {type(model).__name__}."
        )
    return found


def _weight(module: nn.Module) -> torch.Tensor:
    return module.weight.detach()  # weight_orig * mask once pruned


def _prune_to(targets: list[tuple[str, nn.Module]], amount: float, scope: str) -> None:
    """Masks with the ``round(amount · n)`` smallest |w| zeroed (over all targets for
    ``"global"``, per module for ``"layer"``); entries already pruned are zeros, so they stay
    pruned. Replaces any earlier mask (``custom_from_mask`` after ``prune.remove``)."""
    groups = [targets] if scope == "global" else [[t] for t in targets]
    for group in groups:
        weights = [_weight(m) for _, m in group]
        flat = torch.cat([w.abs().reshape(-1).float() for w in weights])
        k = round(amount * flat.numel())
        keep = torch.ones_like(flat, dtype=torch.bool)
        if k > 0:
            keep[torch.topk(flat, k, largest=False).indices] = False
        start = 0
        for (_, module), w in zip(group, weights, strict=True):
            mask = keep[start : start + w.numel()].reshape(w.shape).to(w.dtype)
            start += w.numel()
            if prune.is_pruned(module) and hasattr(module, "weight_mask"):
                prune.remove(module, "weight")
            prune.custom_from_mask(module, "weight", mask)


class MagnitudePruning:
    """What :func:`magnitude_prune` returns: the pruned ``modules``, ``amount`` now,
    ``sparsity()`` (the fraction of exact zeros in their weights), ``step`` (optimizer steps
    seen), ``bind(optimizer)`` for a schedule, and ``remove()`` (unbind and make the zeros
    permanent with ``torch.nn.utils.prune.remove``: plain ``weight`` parameters again)."""

    def __init__(
        self,
        targets: list[tuple[str, nn.Module]],
        amount: float,
        scope: str,
        steps: int,
        begin: int,
        frequency: int,
    ) -> None:
        self.targets, self.final, self.scope = targets, amount, scope
        self.steps, self.begin, self.frequency = steps, begin, frequency
        self.step = 0
        self.amount = cubic_sparsity(0, amount, steps, begin)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        _prune_to(targets, self.amount, scope)

    @property
    def modules(self) -> list[nn.Module]:
        return [m for _, m in self.targets]

    def sparsity(self) -> float:
        zeros = sum(int((_weight(m) == 0).sum()) for m in self.modules)
        return zeros / sum(_weight(m).numel() for m in self.modules)

    def after_step(self) -> None:
        """Advance the schedule by one optimizer step; re-prune on schedule steps."""
        self.step += 1
        due = self.step % self.frequency == 0 or self.step == self.begin + self.steps
        target = cubic_sparsity(self.step, self.final, self.steps, self.begin)
        if due and target > self.amount:
            self.amount = target
            _prune_to(self.targets, target, self.scope)

    def bind(self, optimizer: torch.optim.Optimizer) -> torch.utils.hooks.RemovableHandle:
        """Run ``after_step`` after every ``optimizer.step()`` (``fit`` calls ``after_step``
        itself when this object is passed as a ``regularization``; use one or the other)."""
        handle = optimizer.register_step_post_hook(lambda *_: self.after_step())
        self._handles.append(handle)
        return handle

    def penalty(self) -> torch.Tensor:
        """0: pruning adds nothing to the loss (lets ``fit(regularization=...)`` drive the
        schedule through ``after_step``)."""
        return torch.zeros((), device=self.modules[0].weight.device)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self.modules:
            if prune.is_pruned(module) and hasattr(module, "weight_mask"):
                prune.remove(module, "weight")


def magnitude_prune(
    model: nn.Module,
    amount: float,
    *,
    scope: str = "global",
    types: Iterable[type[nn.Module]] = DEFAULT_TYPES,
    steps: int = 0,
    begin: int = 0,
    frequency: int = 100,
) -> MagnitudePruning:
    """Prune the ``weight`` of every module of ``types`` (``Linear`` and convolutions by
    default) to a fraction ``amount`` of exact zeros by magnitude, through
    ``torch.nn.utils.prune`` masks (``weight = weight_orig * weight_mask``: pruned weights stay
    zero while training, their gradient being masked).

    ``scope="global"`` ranks all the weights together (``prune.global_unstructured`` with
    ``L1Unstructured``: layers end up with different sparsities); ``"layer"`` prunes each
    module to ``amount`` (``prune.l1_unstructured``). With ``steps=0`` (default) the pruning is
    one-shot; with ``steps > 0`` it is gradual: the sparsity follows Zhu & Gupta's cubic
    schedule from 0 at step ``begin`` to ``amount`` at ``begin + steps``, re-pruned every
    ``frequency`` optimizer steps — call ``bind(optimizer)``, or pass the handle to ``fit`` as
    a ``regularization`` (its ``after_step`` advances the schedule, its ``penalty()`` is 0).

    Exactly ``round(amount · n)`` weights are zero after each pruning (n the weights in the
    scope). Biases are not pruned. Composes with ``reglab.attach`` penalties (an L1 rule sees
    the masked ``weight``), AMP and gradient accumulation (masks act on the weight, pruning
    runs per optimizer step); with ``torch.compile``, a re-pruning changes the module's
    parametrization and triggers a recompile.

    >>> model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    >>> handle = magnitude_prune(model, 0.5)
    >>> round(handle.sparsity(), 3)
    0.5
    >>> handle.remove()  # zeros made permanent; model[0].weight is a Parameter again
    """
    amount = _check_amount(amount, "magnitude_prune")
    scope = check_choice(scope, "scope", "magnitude_prune", SCOPES)
    steps = check_positive_int(steps, "steps", "magnitude_prune", minimum=0)
    begin = check_positive_int(begin, "begin", "magnitude_prune", minimum=0)
    frequency = check_positive_int(frequency, "frequency", "magnitude_prune")
    types = tuple(types)
    return MagnitudePruning(_targets(model, types), amount, scope, steps, begin, frequency)
