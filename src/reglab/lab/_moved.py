"""Old module paths of the lab, kept importable after the settings / kinds / trials / sweep
split: each old module re-exports the public names of the modules its code moved to.

>>> from reglab.lab.config import TrialConfig as old
>>> from reglab.lab.settings.config import TrialConfig
>>> old is TrialConfig
True
"""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Any

__all__ = ["reexport"]


def reexport(namespace: MutableMapping[str, Any], *modules: str) -> None:
    """Copy every public name of ``modules`` (in order; later ones win) into ``namespace`` and
    set its ``__all__`` to the union of their ``__all__``."""
    exported: list[str] = []
    for name in modules:
        module = importlib.import_module(name)
        namespace.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
        exported += [n for n in getattr(module, "__all__", ()) if n not in exported]
    namespace["__all__"] = exported
