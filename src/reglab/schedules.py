"""Coefficient schedules: a penalty's strength (or ``NormBound``'s bound) as a function of the
training step.

A schedule is a callable ``f(t) -> value``, ``t`` the number of optimizer steps (or epochs)
done: :class:`Constant`, :class:`Linear`, :class:`Cosine`, :class:`Step`, :class:`Warmup`, or
any function. :func:`schedule` applies one to an attribute of a penalty (``L2.l2``,
``L1.l1``, ``ExpAbs.coefficient``, ``NormBound.max_norm``, ``ProximalL1.l1``, ...): it sets
``f(0)`` at once and ``f(t)`` after each step of the optimizer (a step post-hook, so it works
in any training loop), and returns a handle that removes it, saves and restores its step count,
and logs the current value as a :class:`~reglab.training.Callback`
(``fit(..., callbacks=[handle])`` records ``schedule/<name>`` each epoch).

On the fast paths: L1 / L2 / L1L2 weight penalties read their coefficients from tensors that
the schedule refreshes in place, so a ``torch.compile``'d loss neither recompiles nor keeps a
stale value (tested). Other penalties read their attributes when they are evaluated: correct
in eager mode; under ``torch.compile`` dynamo treats each new value like any Python number.

>>> import torch
>>> from reglab.penalties import L2
>>> w = torch.nn.Parameter(torch.ones(3))
>>> opt = torch.optim.SGD([w], lr=0.1)
>>> l2 = L2(0.0)
>>> handle = schedule(l2, Warmup(1e-2, steps=4), opt)
>>> for _ in range(2):
...     opt.zero_grad(); l2(w).backward(); opt.step()
>>> l2.l2  # half-way through the warm-up
0.005
"""

from __future__ import annotations

import abc
import bisect
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch

from reglab._registry import Registry
from reglab._validation import InvalidParameterError, check_coefficient, check_positive_int, invalid
from reglab.regularization.weights import refresh_coefficients
from reglab.training.callbacks import Callback, TrainState

__all__ = [
    "COEFFICIENTS",
    "Constant",
    "Cosine",
    "Linear",
    "PiecewiseConstant",
    "Schedule",
    "ScheduleHandle",
    "Step",
    "Warmup",
    "coefficient_attribute",
    "registry",
    "schedule",
]

registry: Registry[Schedule] = Registry("schedule")

#: Attributes that hold a coefficient, in the order :func:`schedule` looks for one.
COEFFICIENTS = ("l1", "l2", "coefficient", "factor", "max_norm")


class Schedule(abc.ABC):
    """``schedule(t) -> value`` for ``t = 0, 1, 2, ...`` steps (or epochs) done. Values are
    finite numbers >= 0. ``get_config`` / ``from_config`` as for penalties (study files)."""

    @abc.abstractmethod
    def __call__(self, t: int) -> float: ...

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]: ...

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Schedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.get_config() == other.get_config()  # type: ignore[attr-defined]

    __hash__ = object.__hash__


@registry.register("constant")
class Constant(Schedule):
    """``value`` at every step."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = check_coefficient(value, "value", "Constant")

    def __call__(self, t: int) -> float:
        return self.value

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


def _progress(t: int, steps: int) -> float:
    return min(max(t, 0), steps) / steps


@registry.register("linear")
class Linear(Schedule):
    """From ``start`` to ``end`` linearly over ``steps``, then ``end``:
    ``start + (end − start) · min(t, steps) / steps``."""

    def __init__(self, start: float = 0.0, end: float = 0.0, steps: int = 1) -> None:
        self.start = check_coefficient(start, "start", "Linear")
        self.end = check_coefficient(end, "end", "Linear")
        self.steps = check_positive_int(steps, "steps", "Linear")

    def __call__(self, t: int) -> float:
        return self.start + (self.end - self.start) * _progress(t, self.steps)

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps}


@registry.register("cosine")
class Cosine(Schedule):
    """From ``start`` to ``end`` along half a cosine over ``steps``, then ``end``:
    ``end + (start − end) · (1 + cos(π · min(t, steps) / steps)) / 2``."""

    def __init__(self, start: float = 0.0, end: float = 0.0, steps: int = 1) -> None:
        self.start = check_coefficient(start, "start", "Cosine")
        self.end = check_coefficient(end, "end", "Cosine")
        self.steps = check_positive_int(steps, "steps", "Cosine")

    def __call__(self, t: int) -> float:
        return (
            self.end
            + (self.start - self.end) * (1 + math.cos(math.pi * _progress(t, self.steps))) / 2
        )

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps}


@registry.register("step")
class Step(Schedule):
    """``start · factor ** (t // every)``: multiplied by ``factor`` every ``every`` steps."""

    def __init__(self, start: float = 0.0, factor: float = 0.1, every: int = 1) -> None:
        self.start = check_coefficient(start, "start", "Step")
        self.factor = check_coefficient(factor, "factor", "Step")
        self.every = check_positive_int(every, "every", "Step")

    def __call__(self, t: int) -> float:
        return self.start * self.factor ** (max(t, 0) // self.every)

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "factor": self.factor, "every": self.every}


@registry.register("warmup")
class Warmup(Schedule):
    """From 0 up to ``value`` linearly over ``steps`` (KL annealing, a penalty switched on
    gradually), then ``value``: ``value · min(t, steps) / steps``."""

    def __init__(self, value: float = 0.0, steps: int = 1) -> None:
        self.value = check_coefficient(value, "value", "Warmup")
        self.steps = check_positive_int(steps, "steps", "Warmup")

    def __call__(self, t: int) -> float:
        return self.value * _progress(t, self.steps)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value, "steps": self.steps}


@registry.register("piecewise_constant")
class PiecewiseConstant(Schedule):
    """``values[i]`` for ``boundaries[i-1] <= t < boundaries[i]``: ``values[0]`` before the
    first boundary, ``values[-1]`` from the last one on (``len(values) == len(boundaries) + 1``,
    boundaries non-decreasing). What Population Based Training records per member
    (:mod:`reglab.ensembles.pbt`). Unlike Keras' ``PiecewiseConstantDecay`` (``t <= b``), a
    boundary ``b`` is the first step of the new value: the value changed after ``b`` steps.

    >>> s = PiecewiseConstant([2, 4], [1e-3, 1.25e-3, 1e-3])
    >>> tuple(s(t) for t in range(5))
    (0.001, 0.001, 0.00125, 0.00125, 0.001)
    """

    def __init__(self, boundaries: list[int] | None = None, values: list[float] | None = None):
        boundaries = [] if boundaries is None else list(boundaries)
        values = [0.0] if values is None else list(values)
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in boundaries) or any(
            b > c for b, c in itertools.pairwise(boundaries)
        ):
            raise invalid("boundaries", "PiecewiseConstant", "non-decreasing ints >= 0", boundaries)
        if len(values) != len(boundaries) + 1:
            raise invalid(
                "values",
                "PiecewiseConstant",
                f"{len(boundaries) + 1} numbers (one more than the boundaries)",
                values,
            )
        self.boundaries = boundaries
        self.values = [check_coefficient(v, "values", "PiecewiseConstant") for v in values]

    def __call__(self, t: int) -> float:
        return self.values[bisect.bisect_right(self.boundaries, t)]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


def coefficient_attribute(target: Any, attribute: str | None) -> str:
    """The attribute a schedule of ``target`` sets: ``attribute`` if it names a number, else
    the target's one coefficient (:data:`COEFFICIENTS`); raises naming the candidates."""
    if attribute is not None:
        value = getattr(target, attribute, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(
                "attribute",
                "schedule",
                f"the name of a number attribute of {type(target).__name__}",
                attribute,
            )
        return attribute
    found = [a for a in COEFFICIENTS if isinstance(getattr(target, a, None), (int, float))]
    if len(found) != 1:
        raise InvalidParameterError(
            f"schedule: {type(target).__name__} has "
            + (f"several coefficients ({', '.join(found)})" if found else "no coefficient")
            + f"; pass attribute= (one of {', '.join(found) or ', '.join(COEFFICIENTS)})."
        )
    return found[0]


class ScheduleHandle(Callback):
    """What :func:`schedule` returns: ``remove()`` (the value stays where it is),
    ``value`` (the current one), ``steps`` (optimizer steps counted), ``state_dict()`` /
    ``load_state_dict()`` (resume), and a callback that logs ``schedule/<name>`` each epoch."""

    def __init__(
        self,
        target: Any,
        attribute: str,
        fn: Callable[[int], float],
        optimizer: torch.optim.Optimizer,
        per: str,
        steps_per_epoch: int | None,
        name: str,
    ) -> None:
        self.target, self.attribute, self.fn = target, attribute, fn
        self.per, self.steps_per_epoch, self.name = per, steps_per_epoch, name
        self.steps = 0
        self._hook = optimizer.register_step_post_hook(lambda *_: self._advance())
        self._apply()

    @property
    def t(self) -> int:
        """The schedule's argument: steps done, or whole epochs done."""
        if self.per == "epoch":
            return self.steps // self.steps_per_epoch  # type: ignore[operator]
        return self.steps

    @property
    def value(self) -> float:
        return float(getattr(self.target, self.attribute))

    def _advance(self) -> None:
        self.steps += 1
        self._apply()

    def _apply(self) -> None:
        raw = self.fn(self.t)
        value = check_coefficient(raw, f"schedule value at t={self.t}", self.name)
        setattr(self.target, self.attribute, value)
        refresh_coefficients()  # compiled losses read the new value from a tensor

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self._apply()

    def remove(self) -> None:
        self._hook.remove()

    def on_epoch_end(self, state: TrainState) -> None:
        state.logs[f"schedule/{self.name}"] = self.value

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.name}, {self.fn!r}, t={self.t}, value={self.value:g})"


def schedule(
    target: Any,
    fn: Schedule | Callable[[int], float] | dict[str, Any] | str,
    optimizer: torch.optim.Optimizer,
    *,
    attribute: str | None = None,
    per: str = "step",
    steps_per_epoch: int | None = None,
    name: str | None = None,
) -> ScheduleHandle:
    """Set ``target.<attribute> = fn(t)`` now (``t = 0``) and after every ``optimizer`` step.

    Args:
        target: a penalty (``L1``, ``L2``, ``L1L2``, ``ExpAbs``, ``KLSparsity``, ...), a
            ``NormBound``, a ``ProximalL1`` handle, or any object with a number attribute.
        fn: a :class:`Schedule`, any ``f(t) -> float``, or a registry identifier
            (``{"class_name": "Cosine", "config": {...}}``).
        optimizer: the optimizer whose steps are counted.
        attribute: which attribute; by default the target's one coefficient among
            ``l1``, ``l2``, ``coefficient``, ``factor``, ``max_norm`` (``L1L2`` has two:
            name one).
        per: ``"step"`` (``t`` = optimizer steps done) or ``"epoch"`` (``t`` = whole epochs
            done, which needs ``steps_per_epoch``).
        name: the logged name (``schedule/<name>``); default ``<Class>.<attribute>``.

    Every value must be a finite number >= 0 (else ``InvalidParameterError`` naming the step).
    """
    attribute = coefficient_attribute(target, attribute)
    if per not in ("step", "epoch"):
        raise invalid("per", "schedule", "'step' or 'epoch'", per)
    if per == "epoch":
        steps_per_epoch = check_positive_int(steps_per_epoch, "steps_per_epoch", "schedule")
    if not callable(fn) or isinstance(fn, (dict, str)):
        fn = registry.get(fn)
    return ScheduleHandle(
        target,
        attribute,
        fn,
        optimizer,
        per,
        steps_per_epoch,
        name or f"{type(target).__name__}.{attribute}",
    )
