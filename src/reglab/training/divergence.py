"""Divergence: the first non-finite loss or penalty term of a training run, found within the
step on CPU and without a per-step device sync on accelerators."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = ["Diverged", "FiniteWatch", "Snapshot", "all_finite"]


class Diverged(RuntimeError):
    """Training hit a non-finite loss or penalty term. ``reason`` names the first one, e.g.
    ``"loss is nan at step 12 (epoch 1)"``. Raised where a loop cannot stop and return (
    ``Bagging.fit``, a lab trial); ``fit`` itself stops, warns and sets
    ``History.diverged``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FiniteWatch:
    """Watches each step's named scalars (``loss``, ``penalty/<term>``) for inf and NaN.

    On CPU every step is checked as it is added (reading a CPU scalar costs nothing), so
    training stops before the step that saw the value updates any weight. On an accelerator
    the checks stay on the device: each step folds "is this finite" into a per-name record of
    the first bad step and its value, and the record is read (one sync) every ``every`` steps
    and at the end of each epoch; weights updated after a bad step are then restored by the
    caller (:class:`Snapshot`).

    ``add`` and ``flush`` return the first non-finite value seen, as
    ``"penalty/fc1.kernel is inf at step 1234"`` (steps count from 1 over the whole run), or
    None.
    """

    def __init__(self, device: torch.device, every: int = 64, lazy: bool | None = None) -> None:
        self.lazy = device.type != "cpu" if lazy is None else lazy
        self.every = every
        self._names: tuple[str, ...] = ()
        # Per name: the first bad step (-1: all finite so far) and its value, on the device.
        self._steps = torch.empty(0, dtype=torch.long)
        self._values = torch.empty(0)
        self._pending = 0

    def add(self, step: int, values: Mapping[str, torch.Tensor]) -> str | None:
        """Record step ``step``'s scalars (0-dim tensors; ``loss`` first by convention)."""
        names = tuple(values)
        scalars = [v.detach().reshape(()) for v in values.values()]
        # In the widest dtype given (at least float32): a float64 value beyond float32's range
        # is finite, not an overflow.
        dtype = torch.float32
        for v in scalars:
            dtype = torch.promote_types(dtype, v.dtype)
        stacked = torch.stack([v.to(dtype) for v in scalars])
        if not self.lazy:
            finite = torch.isfinite(stacked)
            if bool(finite.all()):
                return None
            first = int((~finite).nonzero()[0])
            return _describe(names[first], float(stacked[first]), step)
        if names != self._names:  # another set of terms: settle the record of the old one
            found = self.flush()
            if found is not None:
                return found
            self._names = names
            self._steps = torch.full((len(names),), -1, device=stacked.device)
            self._values = torch.zeros(len(names), device=stacked.device, dtype=stacked.dtype)
        new = ~torch.isfinite(stacked) & (self._steps < 0)
        self._steps = torch.where(new, step, self._steps)
        self._values = torch.where(new, stacked, self._values)
        self._pending += 1
        return self.flush() if self._pending >= self.every else None

    def flush(self) -> str | None:
        """Read the device-side record (a no-op on CPU)."""
        if not self._pending:
            return None
        self._pending = 0
        bad = [(s, i) for i, s in enumerate(self._steps.tolist()) if s >= 0]
        if not bad:
            return None
        step, i = min(bad)
        return _describe(self._names[i], float(self._values[i]), step)


def _describe(name: str, value: float, step: int) -> str:
    kind = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{name} is {kind} at step {step}"


class Snapshot:
    """A copy of a module's parameters and buffers, to put back after a divergence.

    ``restore`` copies them back in place (optimizers keep pointing at the same tensors).
    The copy lives on the CPU, so an accelerator's memory is not doubled.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._saved: dict[str, torch.Tensor] = {}

    def _tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        yield from self.module.named_parameters()
        yield from self.module.named_buffers()

    def take(self) -> None:
        """Copy the current values (replacing the previous copy)."""
        with torch.no_grad():
            self._saved = {name: t.detach().to("cpu", copy=True) for name, t in self._tensors()}

    def restore(self) -> None:
        with torch.no_grad():
            for name, t in self._tensors():
                if name in self._saved:
                    t.copy_(self._saved[name])


def all_finite(module: nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (one pass; used after a divergence)."""
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in module.parameters())
