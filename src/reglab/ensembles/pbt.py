"""Population Based Training inside a :class:`~reglab.ensembles.ModelStack`.

The members of a stack are the population (Jaderberg et al. 2017, "Population Based Training
of Neural Networks"). Every few epochs, :meth:`PopulationBasedTraining.step` ranks the members
by a score (higher is better, e.g. validation accuracy), and each member of the worst
``fraction`` (truncation selection)

* **exploits** a member drawn uniformly from the best ``fraction``: its weights, buffers and
  its slice of the optimizer state (Adam's moments ...) become exact copies of the donor's;
* **explores**: each of its coefficients becomes the donor's times ``0.8`` or ``1.25`` (one
  independent draw per coefficient; the factors are ``factors``).

Coefficients are ``(K,)`` tensors that the stack's penalties read — the tensors given to
``L1L2(l1, l2)`` / ``L2(torch.tensor([...]))`` — changed in place, so the penalties see the new
values at the next step without being rebuilt. Unlike trials of a sampler, members share
weights, which is what makes PBT possible at all (optuna/optuna#287).

A member's coefficient history follows its weights: after an exploit, the member's history is
the donor's up to now, then the perturbed value. :meth:`~PopulationBasedTraining.schedules`
returns that history as :class:`reglab.schedules.PiecewiseConstant` schedules the user can
replay on one model with :func:`reglab.schedule`.

>>> import torch
>>> from torch import nn
>>> from reglab.ensembles import ModelStack
>>> stack = ModelStack(lambda: nn.Linear(3, 2), k=4)
>>> opt = torch.optim.SGD(stack.parameters(), lr=0.1)
>>> l2 = torch.tensor([1e-4, 1e-3, 1e-2, 1e-1])
>>> pbt = PopulationBasedTraining(stack, opt, {"l2": l2}, fraction=0.25, seed=0)
>>> event = pbt.step(torch.tensor([0.9, 0.5, 0.7, 0.8]), epoch=2)
>>> event.copies  # (loser, donor): the worst member copied the best
[(1, 0)]
>>> round(l2[1].item() / l2[0].item(), 2) in (0.8, 1.25)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from reglab._validation import InvalidParameterError, check_positive_int, invalid
from reglab.schedules import PiecewiseConstant

__all__ = ["PBTStep", "PopulationBasedTraining", "copy_member_"]


@dataclass(frozen=True)
class PBTStep:
    """What one exploit/explore step did: ``copies`` lists ``(member, donor)`` pairs;
    ``coefficients`` the values after the step (name -> list of K floats)."""

    epoch: int
    copies: list[tuple[int, int]]
    coefficients: dict[str, list[float]]


@torch.no_grad()
def copy_member_(
    stack: nn.Module, optimizer: torch.optim.Optimizer | None, dst: int, src: int
) -> None:
    """Make member ``dst`` of ``stack`` an exact copy of member ``src``: every parameter and
    buffer with a leading member dimension K, and every optimizer state tensor of those
    parameters that has their shape (per-member slices of the stacked state: Adam's
    ``exp_avg``, ``exp_avg_sq``, SGD's ``momentum_buffer`` ...). State shared by all members
    (Adam's scalar ``step``) is left as is: the members have taken the same steps."""
    k = getattr(stack, "n_members", None)
    for tensor in [*stack.parameters(), *stack.buffers()]:
        if tensor.ndim >= 1 and (k is None or tensor.shape[0] == k):
            tensor[dst] = tensor[src]
    if optimizer is None:
        return
    for param in stack.parameters():
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value[dst] = value[src]


class PopulationBasedTraining:
    """Exploit/explore over the members of a stack (see the module docstring).

    Args:
        stack: a :class:`~reglab.ensembles.ModelStack` (or any module whose parameters all
            have a leading member dimension K).
        optimizer: the stack's optimizer (its per-member state is copied), or None.
        coefficients: name -> ``(K,)`` float tensor the penalties read, changed in place.
        fraction: the share of members replaced at each step (and the share of donors):
            ``max(1, floor(fraction · K))`` members. In ``(0, 0.5]``.
        factors: the explore multipliers, one drawn per coefficient and member.
        seed: seeds the donor and factor draws.
        interval: epochs between steps; :meth:`due` says when (the caller validates then).

    Attributes:
        history_: per member, name -> list of ``(epoch, value)`` changes (the first at 0).
        steps_: the :class:`PBTStep` of every call to :meth:`step`.
    """

    def __init__(
        self,
        stack: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        coefficients: Mapping[str, torch.Tensor],
        *,
        fraction: float = 0.25,
        factors: Sequence[float] = (0.8, 1.25),
        seed: int = 0,
        interval: int = 1,
    ) -> None:
        k = getattr(stack, "n_members", None)
        if k is None or k < 2:
            raise invalid("stack", "PopulationBasedTraining", "a ModelStack of >= 2 members", k)
        for name, tensor in coefficients.items():
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (k,):
                raise invalid(
                    f"coefficients[{name!r}]", "PopulationBasedTraining", f"a ({k},) tensor", tensor
                )
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise invalid("fraction", "PopulationBasedTraining", "a float in (0, 0.5]", fraction)
        if not 0 < fraction <= 0.5:
            raise invalid("fraction", "PopulationBasedTraining", "a float in (0, 0.5]", fraction)
        if not factors or not all(isinstance(f, (int, float)) and f > 0 for f in factors):
            raise invalid("factors", "PopulationBasedTraining", "positive numbers", factors)
        self.interval = check_positive_int(interval, "interval", "PopulationBasedTraining")
        self.stack, self.optimizer = stack, optimizer
        self.coefficients = dict(coefficients)
        self.k = k
        self.n_replaced = max(1, math.floor(fraction * k))
        self.factors = tuple(float(f) for f in factors)
        self.generator = torch.Generator().manual_seed(seed)
        self.history_: list[dict[str, list[tuple[int, float]]]] = [
            {name: [(0, float(t[i]))] for name, t in self.coefficients.items()} for i in range(k)
        ]
        self.steps_: list[PBTStep] = []

    def due(self, epoch: int) -> bool:
        """Whether a step is due after ``epoch`` epochs (every ``interval``, not at 0)."""
        return epoch > 0 and epoch % self.interval == 0

    def step(self, scores: torch.Tensor | Sequence[float], epoch: int) -> PBTStep:
        """Rank the members by ``scores`` (K values, higher is better; NaN counts as worst),
        replace the worst by copies of the best and perturb their coefficients. ``epoch``: the
        epochs trained so far (the new coefficients apply from there on)."""
        scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
        if scores.numel() != self.k:
            raise InvalidParameterError(
                f"PopulationBasedTraining.step needs {self.k} scores. Got {scores.numel()}."
            )
        scores = torch.nan_to_num(scores, nan=-math.inf)
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        best, worst = order[: self.n_replaced], order[-self.n_replaced :]
        copies = []
        for loser in worst:
            donor = best[int(torch.randint(len(best), (1,), generator=self.generator))]
            copy_member_(self.stack, self.optimizer, loser, donor)
            history = {name: list(changes) for name, changes in self.history_[donor].items()}
            for name, tensor in self.coefficients.items():
                pick = int(torch.randint(len(self.factors), (1,), generator=self.generator))
                with torch.no_grad():
                    tensor[loser] = tensor[donor] * self.factors[pick]
                history[name].append((epoch, float(tensor[loser])))
            self.history_[loser] = history
            copies.append((loser, donor))
        event = PBTStep(
            epoch, copies, {n: [float(v) for v in t] for n, t in self.coefficients.items()}
        )
        self.steps_.append(event)
        return event

    def schedules(self, steps_per_epoch: int = 1) -> list[dict[str, PiecewiseConstant]]:
        """Per member, name -> the coefficient schedule it trained with, in optimizer steps
        (``steps_per_epoch``; the default 1 counts epochs), for :func:`reglab.schedule`."""
        out = []
        for member in self.history_:
            schedules = {}
            for name, changes in member.items():
                boundaries = [e * steps_per_epoch for e, _ in changes[1:]]
                schedules[name] = PiecewiseConstant(boundaries, [v for _, v in changes])
            out.append(schedules)
        return out
