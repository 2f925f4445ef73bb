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
