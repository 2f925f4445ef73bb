"""The lab's old module paths, kept importable after the split into ``settings/``, ``kinds/``,
``work/`` and ``sweep/``: ``import reglab.lab.config`` (or ``from reglab.lab.models import
MLPModel``) gives a module that re-exports the public names of the modules the code moved to.
One table here instead of a file per old path; :func:`install` (run by ``reglab.lab``) adds the
finder that serves them.

>>> from reglab.lab.config import TrialConfig as old
>>> from reglab.lab.settings.config import TrialConfig
>>> old is TrialConfig
True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import MutableMapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "install", "reexport"]

#: Old module -> the modules its names moved to (later ones win a clash).
MOVED: dict[str, tuple[str, ...]] = {
    "reglab.lab.schema": ("reglab.lab.settings.schema",),
    "reglab.lab.datasets": ("reglab.lab.settings.data",),
    "reglab.lab.config": ("reglab.lab.settings.config",),
    "reglab.lab.grid": ("reglab.lab.settings.grid",),
    "reglab.lab.studyfile": ("reglab.lab.settings.studyfile",),
    "reglab.lab.models": ("reglab.lab.kinds.mlp", "reglab.lab.kinds.factory"),
    "reglab.lab.convnets": ("reglab.lab.kinds.convnets",),
    "reglab.lab.autoencoding": ("reglab.lab.kinds.autoencoder",),
    "reglab.lab.regression": ("reglab.lab.kinds.linear",),
    "reglab.lab.language": ("reglab.lab.kinds.language",),
    "reglab.lab.trial": ("reglab.lab.settings.train", "reglab.lab.work.training"),
    "reglab.lab.classifier": ("reglab.lab.settings.techniques", "reglab.lab.work.classifier"),
    "reglab.lab.ensemble": ("reglab.lab.settings.techniques", "reglab.lab.work.bagging"),
    "reglab.lab.runner": ("reglab.lab.work.runner",),
    "reglab.lab.stacking": ("reglab.lab.work.stacking",),
    "reglab.lab.posthoc": ("reglab.lab.work.posthoc",),
    "reglab.lab.storage": ("reglab.lab.sweep.storage",),
}


def reexport(namespace: MutableMapping[str, Any], modules: Sequence[str]) -> None:
    """Copy every public name of ``modules`` into ``namespace`` and set its ``__all__`` to the
    union of their ``__all__``."""
    exported: list[str] = []
    for name in modules:
        module = importlib.import_module(name)
        namespace.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
        exported += [n for n in getattr(module, "__all__", ()) if n not in exported]
    namespace["__all__"] = exported


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the old paths of :data:`MOVED` (and nothing else)."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        del path, target
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        targets = MOVED[module.__name__]
        module.__doc__ = f"Moved to {', '.join(targets)}; this old path re-exports them."
        reexport(vars(module), targets)


def install() -> None:
    """Add the finder of the old paths (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
