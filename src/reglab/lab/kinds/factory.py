"""The ``factory`` kind: a user's model, ``factory = "package.module:function"``, imported and
called only when its module is trusted (:mod:`reglab.lab.trust`), trained as a classifier.

The factory is called with keyword arguments ``features``, ``classes``, ``image_shape``
(``(C, H, W)`` for images, else None) — all three from the data — and the entries of
``[model] options``; it returns an ``nn.Module`` mapping rows ``(B, features)`` to logits
``(B, classes)`` (see :func:`reglab.lab.trust.call_factory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import KeyPath, Table, fail, spec
from reglab.lab.trust import FACTORY_ARGUMENTS, Trust, call_factory, import_factory
from reglab.lab.work.classifier import build_network, run_classifier

__all__ = ["KIND", "FactoryModel"]


def _factory(path: str, value: Any) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise fail(path, "expected 'package.module:function' with kind = 'factory'", value)
    return value


@dataclass(frozen=True)
class FactoryModel(Table):
    """``[model] kind = "factory"``: ``factory = "package.module:function"``, imported and
    called as ``function(features=F, classes=C, image_shape=(C, H, W) or None, **options)``
    when its module is trusted (``--trust-factory``; :mod:`reglab.lab.trust`)."""

    kind: ClassVar[str] = "factory"
    factory: str = spec("", _factory)
    options: dict[str, Any] = spec({}, lambda path, v: _options(path, v))
    stochastic: ClassVar[bool] = True  # unknown: never stacked

    def check(self, data: DataConfig, where: KeyPath) -> None:
        if not self.factory:
            raise fail(
                where("factory"), "expected 'package.module:function' with kind = 'factory'", ""
            )
        if data.dataset.classes is None:
            raise fail(where("kind"), f"'{data.title}' has no class labels", self.factory)

    def build(self, data: DataConfig) -> nn.Module:
        """Import and call the factory — only when its module is trusted
        (:mod:`reglab.lab.trust`)."""
        Trust.current().require(self.factory, "model.factory")
        function = import_factory(self.factory, "model.factory")
        dataset = data.dataset
        return call_factory(
            function,
            self.factory,
            features=data.features,  # type: ignore[arg-type]
            classes=dataset.classes,  # type: ignore[arg-type]
            image_shape=dataset.image,
            options=self.options,
        )


def _options(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(path, "expected a table", value)
    taken = sorted(set(value) & set(FACTORY_ARGUMENTS))
    if taken:
        raise fail(
            f"{path}.{taken[0]}",
            f"is given to the factory from the data ({', '.join(FACTORY_ARGUMENTS)}); "
            "options cannot set it",
            value[taken[0]],
        )
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
