"""The ``factory`` kind: a user's model, ``factory = "package.module:function"``, imported and
called only when its module is trusted (:mod:`reglab.lab.trust`), trained as a classifier."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from reglab._validation import InvalidParameterError
from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import KeyPath, Table, fail, spec
from reglab.lab.work.classifier import build_network, run_classifier

__all__ = ["KIND", "FactoryModel"]


def _factory(path: str, value: Any) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise fail(path, "expected 'package.module:function' with kind = 'factory'", value)
    return value


@dataclass(frozen=True)
class FactoryModel(Table):
    """``[model] kind = "factory"``: ``factory = "package.module:function"``, imported and
    called with the ``options`` table as keyword arguments, when its module is trusted
    (``--trust-factory``; :mod:`reglab.lab.trust`)."""

    kind: ClassVar[str] = "factory"
    factory: str = spec("", _factory)
    options: dict[str, Any] = spec({}, lambda path, v: _options(path, v))
    stochastic: ClassVar[bool] = True  # unknown: never stacked

    def check(self, data: DataConfig, where: KeyPath) -> None:
        if not self.factory:
            raise fail(
                where("factory"), "expected 'package.module:function' with kind = 'factory'", ""
            )

    def build(self, data: DataConfig) -> nn.Module:
        """Import and call the factory — only when its module is trusted
        (:mod:`reglab.lab.trust`)."""
        from reglab.lab.trust import Trust

        del data
        Trust.current().require(self.factory, "model.factory")
        module_name, _, attr = self.factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise InvalidParameterError(
                f"model.factory: cannot import {self.factory!r} ({err}); expected "
                "'package.module:function' importable from here"
            ) from None
        return factory(**self.options)


def _options(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(path, "expected a table", value)
    return dict(value)


KIND = register(
    Kind(
        "factory",
        FactoryModel,
        "classifier",
        network=build_network,
        run=run_classifier,
        user_code=True,
        order=3,
    )
)
