"""Stopping members of a training stack: the stack is compacted, so a stopped member costs
no more compute.

A stacked search (:mod:`reglab.lab.sweep.stacked_search`) trains K candidates as one
:class:`~reglab.ensembles.ModelStack`, and its pruner stops some of them after an epoch. A
stopped member must stop costing compute — zeroing its loss would still run its GEMMs and its
optimizer step — so at that epoch's end (inside ``fit``, from :class:`MemberStopping`'s
``on_epoch_end``) the stack is rebuilt from the live members only:

* a new, smaller ``ModelStack`` holds the live members' current weights;
* the optimizer keeps going over the new parameters with each live member's slice of its
  state (Adam's moments, SGD's momentum, the step count), so their next steps are the ones
  they would have taken in the larger stack;
* the penalties are attached again with the live members' ``(K',)`` coefficients;
* the batches keep each live member's own generator (its batch order goes on unchanged).

The live members therefore train on exactly as before — a stack's members are independent,
up to the floating-point rounding of batched GEMMs that the stacking tests already tolerate
(tests/lab/search/test_stacked_search.py) — while the stopped ones' last weights are kept
for their final metrics. Randomness drawn by the stack's one generator (dropout masks, noise,
mixing) is per member *in distribution* only, as in any stack: compaction changes the later
draws of the live members, not their distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from reglab.ensembles import ModelStack
from reglab.training import Callback

__all__ = ["COLUMNS", "MemberStopping", "Stoppable", "compact_optimizer", "member_row"]

#: The stack's logs -> each member's history column (the summed ``loss`` is dropped).
COLUMNS = {
    "member_loss": "loss",
    "member_acc": "acc",
    "val_member_loss": "val_loss",
    "val_member_acc": "val_acc",
    "step_time": "step_time",
    "epoch_time": "epoch_time",
    "epoch": "epoch",
}

#: ``decide(epochs done, {member: its history row of this epoch})`` -> the members to stop
#: (members are numbered as given to the stack at the start, 0..K-1).
Decide = Callable[[int, Mapping[int, Mapping[str, float]]], Collection[int]]


def member_row(logs: Mapping[str, Any], position: int) -> dict[str, float]:
    """The history row of the member at ``position`` in the stack, from the stack's logs of
    one epoch (``(K,)`` lists per member, scalars shared)."""
    return {
        column: float(logs[key][position] if isinstance(logs[key], list) else logs[key])
        for key, column in COLUMNS.items()
        if key in logs
    }


class Stoppable(nn.Module):
    """What ``fit`` trains: a stack that can be replaced by a smaller one between epochs.
    ``(b, K, F)`` training batches go to member ``k`` each, shared ``(b, F)`` held-out batches
    to every member; the output is ``(K, b, C)``."""

    def __init__(self, stack: ModelStack) -> None:
        super().__init__()
        self.stack = stack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # (b, K, F): one batch per member
            return self.stack(x.transpose(0, 1), per_member=True)
        return self.stack(x)  # (b, F): the same rows for every member


class _Penalties:
    """The regularizer ``fit`` holds for the whole run; the one it delegates to is attached
    again to each compacted stack."""

    def __init__(self, current: Any) -> None:
        self.current = current

    def penalty(self) -> torch.Tensor:
        return self.current.penalty()

    def terms(self) -> dict[str, torch.Tensor]:
        return self.current.terms() if hasattr(self.current, "terms") else {}

    def after_step(self) -> None:
        if hasattr(self.current, "after_step"):
            self.current.after_step()

    def remove(self) -> None:
        self.current.remove()


def compact_optimizer(
    optimizer: torch.optim.Optimizer,
    old: Mapping[str, nn.Parameter],
    new: Mapping[str, nn.Parameter],
    keep: Sequence[int],
) -> None:
    """Point ``optimizer`` at the parameters ``new`` (by name, in place of ``old``'s), each
    state tensor of a parameter's shape cut to the members ``keep`` (positions along the
    leading member dimension); scalars (the step count) are kept. The state dict and the
    parameter groups are changed in place, so an optimizer that shares them
    (:class:`reglab.optim.SAM`) follows."""
    names = {id(p): name for name, p in old.items()}
    index: torch.Tensor | None = None
    for group in optimizer.param_groups:
        moved = []
        for p in group["params"]:
            q = new[names[id(p)]]
            state = optimizer.state.pop(p, None)
            if state:
                cut = {}
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape:
                        if index is None or index.device != value.device:
                            index = torch.tensor(list(keep), device=value.device)
                        value = value.index_select(0, index)
                    cut[key] = value
                optimizer.state[q] = cut
            moved.append(q)
        group["params"] = moved


class MemberStopping(Callback):
    """After every epoch, hands each live member's history row to ``decide`` and stops the
    members it names, compacting the stack (see the module docstring); when none is left,
    training ends.

    Args:
        model: the :class:`Stoppable` that ``fit`` trains.
        decide: see :data:`Decide`.
        attach: ``attach(stack, members)`` attaches the penalties of ``members`` (original
            numbers, in stack order) to ``stack`` and returns the handle, or None.
        penalties: the handle attached to the first stack (or None).
        batches: an object whose ``generators`` list holds one generator per member.

    After training: ``histories[m]`` is member ``m``'s rows, ``stopped_at[m]`` the epochs it
    trained when it was stopped (absent when it trained to the end), ``stopped[m]`` its
    weights then (a member model, on the CPU); ``live`` the members of the final stack.
    """

    def __init__(
        self,
        model: Stoppable,
        decide: Decide,
        attach: Callable[[ModelStack, Sequence[int]], Any],
        penalties: Any,
        batches: Any,
    ) -> None:
        self.model, self.decide, self.attach, self.batches = model, decide, attach, batches
        self.penalties = None if penalties is None else _Penalties(penalties)
        self.live = list(range(model.stack.k))
        self.histories: dict[int, list[dict[str, float]]] = {m: [] for m in self.live}
        self.stopped_at: dict[int, int] = {}
        self.stopped: dict[int, nn.Module] = {}

    def on_epoch_end(self, state: Any) -> None:
        rows = {m: member_row(state.logs, i) for i, m in enumerate(self.live)}
        for m, row in rows.items():
            self.histories[m].append(row)
        step = state.epoch + 1
        stop = set(self.decide(step, rows)) & set(self.live)
        if not stop:
            return
        members = self.model.stack.unstack()
        for i, m in enumerate(self.live):
            if m in stop:
                self.stopped[m] = members[i].cpu()
                self.stopped_at[m] = step
        keep = [i for i, m in enumerate(self.live) if m not in stop]
        if not keep:
            self.live = []
            state.stop, state.stop_reason = True, f"every member stopped at epoch {step}"
            return
        self._compact(state.optimizer, keep, [members[i] for i in keep])
        self.live = [self.live[i] for i in keep]

    def _compact(
        self, optimizer: torch.optim.Optimizer, keep: list[int], members: list[nn.Module]
    ) -> None:
        old = self.model.stack
        new = ModelStack(members)
        new.train(old.training)
        compact_optimizer(optimizer, dict(old.named_parameters()), dict(new.named_parameters()),
                          keep)  # fmt: skip
        if self.penalties is not None:
            self.penalties.current.remove()
            self.penalties.current = self.attach(new, [self.live[i] for i in keep])
        self.batches.generators = [self.batches.generators[i] for i in keep]
        self.model.stack = new
