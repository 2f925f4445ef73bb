"""Population Based Training of lab trials: the members of one stack are the population.

:func:`train_population` trains ``(config, seed)`` members that share a
:func:`~reglab.lab.work.stacking.stack_key` as one :class:`~reglab.ensembles.ModelStack`
(:func:`~reglab.lab.work.stacking.run_stacked`: each member its own initialisation, batch
order and coefficients), with one more callback: after every ``interval`` epochs (not after the
last), :class:`~reglab.ensembles.PopulationBasedTraining` ranks the members by the validation
objective that epoch logged per member (``val_member_acc``, or ``val_member_loss``, lower
better), and each member of the worst ``fraction`` (default a quarter) copies the weights and
optimizer state of one of as many best members and multiplies its coefficients by one of
``factors`` (default 0.8 or 1.25).

The coefficients are the searched values (``values``: per axis, each member's value). A value
lives in every stack penalty whose ``(K,)`` tensor holds exactly the members' values of that
axis (an axis ``rules.fc*.kernel.l2`` is ``fc1``'s and ``fc2``'s ``l2``): :func:`bind` finds
them, and after each step the engine's per-axis tensor is copied into each, so the layers an
axis names keep one coefficient per member.

A member's history rows are those of its slot in the stack (after a copy, the slot continues
from the donor's weights); its :attr:`PopulationOutcome.schedules` entry is the coefficient
lineage it trained with (the donor's values up to the copy, then the perturbed one), per epoch:
what a lone model replays with :func:`reglab.schedule` (``per="epoch"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reglab.ensembles import PBTStep, PopulationBasedTraining
from reglab.lab.settings.config import TrialConfig
from reglab.lab.work.stacking import run_stacked, stack_rules
from reglab.lab.work.training import TrialContext, TrialOutcome
from reglab.penalties import L1L2
from reglab.regularization.weights import refresh_coefficients
from reglab.training import Callback, TrainState

__all__ = ["SCORES", "PopulationOutcome", "bind", "train_population"]

#: objective -> (the stack's per-member log of it, higher is better)
SCORES = {"val_acc": ("val_member_acc", True), "val_loss": ("val_member_loss", False)}


@dataclass
class PopulationOutcome:
    """Each member's final :class:`TrialOutcome` (its slot's), its coefficient schedules
    (axis -> ``{"boundaries": [epochs], "values": [...]}``), the engine's steps, and
    ``coefficients``: per axis, the ``(K,)`` values every stack penalty bound to it held at the
    end (``{"fc0.kernel.l2": [...], ...}``: what the stack trained with, for checks)."""

    outcomes: list[TrialOutcome]
    schedules: list[dict[str, dict[str, list[Any]]]]
    steps: list[PBTStep]
    coefficients: dict[str, dict[str, list[float]]]


def bind(
    rules: Mapping[str, Mapping[str, Any]], values: Mapping[str, Sequence[float]]
) -> dict[str, list[tuple[L1L2, str]]]:
    """Per axis, the ``(penalty, "l1" | "l2")`` coefficients of the stack's ``rules``
    (:func:`~reglab.lab.work.stacking.stack_rules`) whose ``(K,)`` tensor holds the axis's
    member values. Raises ``ValueError`` naming an axis that no penalty holds."""
    found: dict[str, list[tuple[L1L2, str]]] = {name: [] for name in values}
    for rule in rules.values():
        for penalty in rule.values():
            if not isinstance(penalty, L1L2):
                continue
            for attribute in ("l1", "l2"):
                tensor = getattr(penalty, attribute)
                if not isinstance(tensor, torch.Tensor):
                    continue
                for name, wanted in values.items():
                    expected = torch.tensor(list(wanted), dtype=tensor.dtype)
                    if tensor.shape == expected.shape and torch.allclose(
                        tensor.cpu(), expected, rtol=1e-9, atol=0.0
                    ):
                        found[name].append((penalty, attribute))
    for name, pairs in found.items():
        if not pairs:
            raise ValueError(f"{name}: no penalty coefficient of the stack holds this axis")
    return found


class _Exploit(Callback):
    """Steps the engine after every ``interval`` epochs but the last (see the module doc)."""

    def __init__(
        self,
        values: Mapping[str, Sequence[float]],
        bound: Mapping[str, list[tuple[L1L2, str]]],
        objective: str,
        interval: int,
        seed: int,
        epochs: int,
        fraction: float,
        factors: Sequence[float],
    ) -> None:
        self.masters = {n: torch.tensor(list(v), dtype=torch.float64) for n, v in values.items()}
        self.bound, self.interval, self.seed, self.epochs = bound, interval, seed, epochs
        self.fraction, self.factors = fraction, tuple(factors)
        self.column, self.higher = SCORES[objective]
        self.engine: PopulationBasedTraining | None = None

    def on_train_begin(self, state: TrainState) -> None:
        stack = state.model.stack  # run_stacked's per-member view of the stack
        self.engine = PopulationBasedTraining(
            stack,
            state.optimizer,
            self.masters,
            seed=self.seed,
            interval=self.interval,
            fraction=self.fraction,
            factors=self.factors,
        )

    def on_epoch_end(self, state: TrainState) -> None:
        done = state.epoch + 1
        assert self.engine is not None  # set at on_train_begin
        if done >= self.epochs or not self.engine.due(done):
            return
        scores = torch.tensor(state.logs[self.column], dtype=torch.float64)  # (K,)
        self.engine.step(scores if self.higher else -scores, done)
        with torch.no_grad():
            for name, pairs in self.bound.items():
                for penalty, attribute in pairs:
                    getattr(penalty, attribute).copy_(self.masters[name])
        refresh_coefficients()


def train_population(
    members: Sequence[tuple[TrialConfig, int]],
    values: Mapping[str, Sequence[float]],
    *,
    objective: str,
    interval: int,
    seed: int,
    fraction: float,
    factors: Sequence[float],
    context: TrialContext | None = None,
) -> PopulationOutcome:
    """Train ``members`` (configs sharing a stack key, each with its seed) as one population.

    Args:
        members: the population, member ``k``'s coefficients those of ``values`` at ``k``.
        values: axis name -> the ``K`` members' initial coefficient (each a penalty's
            ``l1`` / ``l2``; :func:`bind`).
        objective: ``"val_acc"`` or ``"val_loss"`` (:data:`SCORES`): what members are ranked on.
        interval: epochs between exploit/explore steps.
        fraction: the share of members replaced at each step (and of donors), in (0, 0.5];
            ``[search] fraction`` (:class:`~reglab.lab.search.settings.SearchSettings` owns
            the lab's defaults).
        factors: the multipliers a copy's coefficients are explored with (``[search]
            factors``).
        seed: seeds the engine's donor and factor draws.
        context: progress and device, as for any trial.

    Raises ``ValueError`` when an axis is no stack coefficient, and
    :class:`~reglab.training.Diverged` when a member diverged (the population stops)."""
    configs = [c for c, _ in members]
    rules = stack_rules(configs)
    bound = bind(rules, values)
    epochs = configs[0].train.epochs
    exploit = _Exploit(values, bound, objective, interval, seed, epochs, fraction, factors)
    outcomes = run_stacked(members, context, rules=rules, callbacks=[exploit])
    assert exploit.engine is not None
    schedules = [
        {name: s.get_config() for name, s in member.items()}
        for member in exploit.engine.schedules()
    ]
    for outcome in outcomes:
        outcome.extra["population"] = len(outcomes)
    held = {
        name: {
            f"{glob}.{kind}.{attribute}": [float(v) for v in getattr(penalty, attribute)]
            for glob, rule in rules.items()
            for kind, penalty in rule.items()
            for bound_penalty, attribute in pairs
            if penalty is bound_penalty
        }
        for name, pairs in bound.items()
    }
    return PopulationOutcome(outcomes, schedules, list(exploit.engine.steps_), held)
