"""The ``hf`` extra (``datasets``, which brings ``pyarrow``), imported when a format needs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from reglab._optional import MissingExtraError

__all__ = ["require_extra"]


def require_extra(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` naming ``pip install 'reglab[hf]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise
        raise MissingExtraError(
            f"{feature} needs {top}: pip install 'reglab[hf]'", name=top
        ) from None
