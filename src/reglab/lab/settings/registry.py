"""The trial-kind registry: what ``[model] kind = "..."`` may name, and who trains it.

A *kind* is one small unit (:class:`Kind`): the ``[model]`` table class that parses and
validates its settings, the builder of the network its rules attach to, and the runner that
trains one grid point with one seed. Each kind lives in its own module under
:mod:`reglab.lab.kinds` and registers itself there with :func:`register`; everything that
dispatches on the kind (the ``[model]`` parser, :func:`reglab.lab.run_trial`, the stacker)
asks this registry and imports no kind. The built-in kinds are imported on the first lookup
(every module of the :mod:`reglab.lab.kinds` package), so adding a kind is adding one module.

>>> from reglab.lab.settings import registry
>>> registry.get("mlp").family
'classifier'
>>> registry.names()
['mlp', 'cnn', 'resnet', 'factory', 'autoencoder', 'linear', 'lstm-lm']
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reglab.lab.settings.schema import Table

__all__ = ["FAMILIES", "Kind", "get", "kinds", "names", "register"]

#: What a kind's trials are, as the config and the reports see it (``TrialConfig.kind``).
FAMILIES = ("classifier", "autoencoder", "regression", "language")

#: The package whose modules are the built-in kinds (imported by name, on first lookup).
_BUILTIN_PACKAGE = "reglab.lab.kinds"

_KINDS: dict[str, Kind] = {}
_loaded = False


@dataclass(frozen=True)
class Kind:
    """One trial kind.

    ``name`` is what ``[model] kind`` says; ``model`` the frozen table class that parses the
    ``[model]`` table (it has ``check(data, where)``, ``build(data)`` and ``stochastic``);
    ``family`` one of :data:`FAMILIES` (the classifier family takes every classifier
    technique); ``network(config)`` builds the module the rules are matched against (built on
    the meta device at parse time unless ``user_code``); ``run(config, seed, context)`` trains
    and returns a :class:`~reglab.lab.work.training.TrialOutcome`. ``user_code``: the builder
    runs code named in the study (its rules are checked when the trial starts); ``stackable``:
    several grid points of this kind can train as one vmapped stack; ``order``: its place in
    listings.
    """

    name: str
    model: type[Table]
    family: str
    network: Callable[[Any], Any]
    run: Callable[[Any, int, Any], Any]
    user_code: bool = False
    stackable: bool = False
    #: Where the kind is listed (error messages, ``reglab show``): lower first.
    order: int = 100

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"The 'family' parameter of Kind must be one of {', '.join(FAMILIES)}. "
                f"Got {self.family!r} instead."
            )


def register(kind: Kind) -> Kind:
    """Add ``kind`` (its ``name`` must be new); returns it."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"A trial kind named {kind.name!r} is already registered.")
    _KINDS[kind.name] = kind
    return kind


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(_BUILTIN_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__, f"{_BUILTIN_PACKAGE}."):
        if not info.name.rpartition(".")[2].startswith("_"):
            importlib.import_module(info.name)


def kinds() -> dict[str, Kind]:
    """Every registered kind by name (the built-in ones first imported)."""
    _load_builtin()
    return dict(sorted(_KINDS.items(), key=lambda item: (item[1].order, item[0])))


def names() -> list[str]:
    """The names ``[model] kind`` accepts, in listing order."""
    return list(kinds())


def get(name: str) -> Kind:
    """The kind called ``name``; a ``KeyError`` naming the known ones otherwise."""
    known = kinds()
    if name not in known:
        raise KeyError(f"no trial kind {name!r}; known: {', '.join(known)}")
    return known[name]
