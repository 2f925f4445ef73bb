"""One validation helper and one message template for the whole package.

Every user-facing argument check in reglab goes through ``invalid`` so that messages read
the same everywhere::

    The 'l2' parameter of L2 must be a finite number >= 0. Got -1.0 instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "Checked",
    "InvalidParameterError",
    "check_choice",
    "check_coefficient",
    "check_coefficients",
    "check_positive_int",
    "check_probability",
    "invalid",
]


class InvalidParameterError(ValueError, TypeError):
    """Raised when an argument has the wrong type or value.

    Subclasses both ``ValueError`` and ``TypeError`` so that users' existing
    ``except ValueError`` / ``except TypeError`` clauses keep working.
    """


def invalid(name: str, owner: str, expected: str, got: Any) -> InvalidParameterError:
    """Build the package's standard error for parameter ``name`` of ``owner``."""
    return InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {expected}. Got {got!r} instead."
    )


class Checked:
    """A class attribute whose every assignment is validated as the constructor validates it.

    ``l2 = Checked(check_coefficients)`` on ``L2`` makes ``penalty.l2 = -5.0`` raise the same
    error as ``L2(-5.0)``: ``check(value, name, owner)`` runs on each assignment (in
    ``__init__``, by hand, by a schedule) and its return value is stored. ``owner`` is the
    name messages give (default: the instance's class name).

    Only ``__set__`` is defined: the value lives in the instance's ``__dict__`` under the
    attribute's own name, and a descriptor without ``__get__`` lets Python read it from there,
    so reading the attribute costs no more than a plain one (penalties are read every step).

    >>> class Decay:
    ...     rate = Checked(check_coefficient)
    ...     def __init__(self, rate): self.rate = rate
    >>> decay = Decay(0.5)
    >>> try:
    ...     decay.rate = -1
    ... except ValueError as error:
    ...     print(error)
    The 'rate' parameter of Decay must be a finite number >= 0. Got -1.0 instead.
    >>> decay.rate
    0.5
    """

    def __init__(self, check: Any, owner: str | None = None) -> None:
        self.check = check
        self.owner = owner  # the name messages give; default: the instance's class
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __set__(self, obj: Any, value: Any) -> None:
        owner = self.owner or type(obj).__name__
        obj.__dict__[self.name] = self.check(value, self.name, owner)


def check_coefficient(value: Any, name: str, owner: str) -> float:
    """Return ``value`` as a float if it is a finite real number >= 0, else raise.

    Booleans and strings are rejected even though Python would coerce them: ``L2("0.1")`` and
    ``L2(True)`` are almost always mistakes.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(name, owner, "a finite number >= 0", value)
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise invalid(name, owner, "a finite number >= 0", value)
    return value


def check_coefficients(value: Any, name: str, owner: str) -> float | torch.Tensor:
    """Like ``check_coefficient``, but also accepts a 1-D tensor of finite values >= 0:
    one coefficient per ensemble member (see ``reglab.ensembles.ModelStack``)."""
    if isinstance(value, torch.Tensor) and value.ndim == 1 and value.numel() > 0:
        if (
            value.is_floating_point()
            and bool(torch.isfinite(value).all())
            and bool((value >= 0).all())
        ):
            return value.detach()
        raise invalid(name, owner, "finite values >= 0 (a float tensor)", value)
    return check_coefficient(value, name, owner)


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming the allowed values."""
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise invalid(name, owner, f"one of {allowed}", value)
    return value


def check_probability(value: Any, name: str, owner: str) -> float:
    """Return ``value`` as a float in [0, 1) (a drop probability), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise invalid(name, owner, "a float in [0, 1)", value)
    return float(value)


def check_positive_int(value: Any, name: str, owner: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid(name, owner, f"an int >= {minimum}", value)
    return value
