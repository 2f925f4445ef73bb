"""One interface for every search method, and the registry that maps ``method`` to it.

A method is a small class registered under its ``[search] method`` name. What the lab asks of
it (the dispatching code imports no method):

* :meth:`SearchMethod.sampler` — the Optuna sampler the study is created with, or None when
  the lab itself enqueues the points (``grid``, ``coarse-to-fine``, ``pbt``);
* :attr:`SearchMethod.stacks_population` — whether one trial trains a whole population in one
  stack (``pbt``).

Method-specific steps (coarse-to-fine's stages, PBT's population) live in the method's module.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import optuna

from reglab.lab.search.settings import SearchSettings
from reglab.lab.settings.schema import fail

__all__ = ["SearchMethod", "get_method", "method_names", "register"]

_METHODS: dict[str, SearchMethod] = {}


class SearchMethod(abc.ABC):
    """Base of the search methods (see the module docstring)."""

    name: ClassVar[str]
    stacks_population: ClassVar[bool] = False

    def sampler(self, settings: SearchSettings) -> optuna.samplers.BaseSampler | None:
        """The study's sampler; None: the lab enqueues fixed points (the default)."""
        return None


def register(cls: type[SearchMethod]) -> type[SearchMethod]:
    """Class decorator: register one instance under ``cls.name``."""
    if cls.name in _METHODS:
        raise RuntimeError(f"search method {cls.name!r} registered twice")
    _METHODS[cls.name] = cls()
    return cls


def method_names() -> list[str]:
    """The registered method names, in registration order."""
    return list(_METHODS)


def get_method(name: str, path: str = "search.method") -> SearchMethod:
    """The method registered as ``name``; an unknown name is a one-line error listing them."""
    method = _METHODS.get(name)
    if method is None:
        raise fail(path, f"expected one of {', '.join(_METHODS)}", name)
    return method
