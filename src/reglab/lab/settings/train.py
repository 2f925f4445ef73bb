"""The ``[train]`` table, ``norm_bound`` and ``schedules = [...]``: settings every trial kind
shares (parsed and validated here; :mod:`reglab.lab.work.training` trains with them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from reglab.lab.settings.schema import Table, choice, fail, integer, number, spec, string

__all__ = ["NormBoundConfig", "ScheduleConfig", "ScheduleTarget", "TrainConfig"]


def _precision(path: str, value: Any) -> str:
    """``"32"``, ``"bf16"`` or ``"fp16"`` (the number 32 is read as ``"32"``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 32:
        value = "32"
    return choice("32", "bf16", "fp16")(path, value)


@dataclass(frozen=True)
class TrainConfig(Table):
    """The ``[train]`` table."""

    #: ``"sam"``: SAM around the grid point's ``sam.base`` (``sam = {...}``, techniques.py)
    optimizer: str = spec("adam", choice("adam", "adamw", "sgd", "sam"))
    lr: float = spec(1e-3, number(above=0.0))
    #: SGD's momentum
    momentum: float = spec(0.9, number(0.0, below=1.0))
    #: The optimizer's own weight decay, on kernels only (:func:`reglab.param_groups`):
    #: coupled for ``sgd`` (the same as an ``L2(weight_decay / 2)`` rule) and ``adam``,
    #: decoupled for ``adamw``.
    weight_decay: float = spec(0.0, number(0.0))
    epochs: int = spec(30, integer(1))
    batch_size: int = spec(64, integer(1))
    #: ``"32"``, ``"bf16"`` or ``"fp16"``: autocast dtype of the forward pass, loss and
    #: penalties (:mod:`reglab.training.precision`); ``fp16`` needs ``--device cuda`` or ``mps``
    precision: str = spec("32", _precision)
    #: start every trial from these weights: a ``.safetensors`` file or a trial folder of an
    #: earlier run (relative to the study file), or the name of a ``[[grid]]`` entry of this
    #: study (its trial of the same seed); checked against the model at parse time
    #: (:mod:`reglab.lab.settings.init`). ``""``: the model's own initialisation
    init: str = spec("", string())


@dataclass(frozen=True)
class NormBoundConfig(Table):
    """``norm_bound = { max_norm, lr_dual }``: a :class:`~reglab.constraints.NormBound` over
    all kernels of the model together."""

    max_norm: float = spec(check=number(0.0, what="a number (the bound k)"))
    lr_dual: float = spec(0.1, number(above=0.0))


def _schedule(path: str, value: Any) -> Any:
    """A ``reglab.schedules`` registry identifier (kept as written; built on use)."""
    from reglab.schedules import registry

    if isinstance(value, str) or not isinstance(value, Mapping):
        raise fail(path, "expected a table like { class_name = 'warmup', config = {...} }", value)
    try:
        registry.get(dict(value))
    except (ValueError, TypeError) as err:
        raise fail(path, str(err).rstrip("."), value) from None
    return dict(value)


#: The penalties of a rule a schedule may target (``rules.<glob>.<slot>``).
SCHEDULED_SLOTS = ("kernel", "bias", "activity")


@dataclass(frozen=True)
class ScheduleTarget:
    """What a schedule's ``target`` names, parsed once: ``what`` is ``"norm_bound"``,
    ``"proximal_l1"`` or ``"rule"`` (then ``glob`` and ``slot``: the rule's pattern and its
    ``kernel``, ``bias`` or ``activity`` penalty). A trial finds the object by this key among
    the ones it built (:func:`reglab.lab.work.training.grid_regularizers`).

    >>> ScheduleTarget.parse('rules.fc*.kernel')
    ScheduleTarget(what='rule', glob='fc*', slot='kernel')
    >>> ScheduleTarget.parse('rules.fc*') is None
    True
    """

    what: str
    glob: str = ""
    slot: str = ""

    @classmethod
    def parse(cls, text: str) -> ScheduleTarget | None:
        """The target ``text`` names, or ``None`` when it is not of a target's form."""
        if text in ("norm_bound", "proximal_l1"):
            return cls(text)
        prefix, _, rest = text.partition(".")
        glob, _, slot = rest.rpartition(".")
        if prefix != "rules" or not glob or slot not in SCHEDULED_SLOTS:
            return None
        return cls("rule", glob, slot)


@dataclass(frozen=True)
class ScheduleConfig(Table):
    """One entry of a grid point's ``schedules = [...]``: ``target`` is ``"rules.<glob>.<kind>"``
    (the penalty of that rule: ``kernel``, ``bias`` or ``activity``), ``"norm_bound"`` (its
    bound) or ``"proximal_l1"``; ``schedule`` a :mod:`reglab.schedules` identifier, e.g.
    ``{ class_name = "warmup", config = { value = 1e-3, steps = 500 } }``; ``attribute`` the
    coefficient when the target has several (``L1L2``: ``"l1"`` or ``"l2"``); ``per`` whether
    ``t`` counts optimizer steps or epochs."""

    target: str = spec(check=string())
    schedule: dict[str, Any] = spec(check=_schedule)
    attribute: str = spec("", string())
    per: str = spec("step", choice("step", "epoch"))

    @property
    def resolved(self) -> ScheduleTarget | None:
        """:attr:`target` parsed (checked against the grid point by ``TrialConfig``)."""
        return ScheduleTarget.parse(self.target)

    def build(self, target: Any, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
        from reglab.schedules import registry, schedule

        return schedule(
            target,
            registry.get(dict(self.schedule)),
            optimizer,
            attribute=self.attribute or None,
            per=self.per,
            steps_per_epoch=steps_per_epoch if self.per == "epoch" else None,
            name=self.target + (f".{self.attribute}" if self.attribute else ""),
        )
