"""Optional dependencies: the core needs torch and numpy only; everything else is an extra.

A module that needs an extra imports it through ``require`` when it is *used*, so
``import reglab`` and every library module work with the core alone and a missing extra fails
with one line that says how to install it::

    reglab.data.digits needs scikit-learn: pip install 'reglab[lab]'
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["MissingExtraError", "require", "toml"]

#: import name -> (distribution to mention, the extra that installs it)
EXTRAS = {
    "sklearn": ("scikit-learn", "lab"),
    "scipy": ("scipy", "lab"),
    "matplotlib": ("matplotlib", "lab"),
    "optuna": ("optuna", "lab"),
    "safetensors": ("safetensors", "lab"),
    "rich": ("rich", "lab"),
    "kornia": ("kornia", "images"),
    "skimage": ("scikit-image", "images"),
    "lightning": ("lightning", "lightning"),
    "transformers": ("transformers", "transformers"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "tomli": ("tomli", "lab"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` (dotted names allowed) for ``feature``, or raise
    ``MissingExtraError`` with the ``pip install 'reglab[extra]'`` line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the extra is there but something it needs is not: not ours to explain
        package, extra = EXTRAS.get(top, (top, "lab"))
        raise MissingExtraError(
            f"{feature} needs {package}: pip install 'reglab[{extra}]'", name=top
        ) from None


def toml() -> ModuleType:
    """``tomllib`` (Python >= 3.11) or its backport ``tomli`` (declared for Python 3.10)."""
    if sys.version_info >= (3, 11):
        import tomllib  # novermin (only on Python >= 3.11)

        return tomllib
    return require("tomli", "reading study files on Python 3.10")  # pragma: no cover
