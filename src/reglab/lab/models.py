"""Study models of classifier trials: reglab's MLP and user factories, with their
``[model]`` tables."""

from __future__ import annotations

import importlib
import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from reglab._validation import InvalidParameterError, check_choice, check_probability, invalid
from reglab.lab.datasets import DataConfig
from reglab.lab.schema import KeyPath, Table, choice, fail, integer, number, sequence_of, spec

__all__ = ["ACTIVATIONS", "FactoryModel", "MLPModel", "mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> nn.Sequential:
    """Fully connected net ``sizes[0] -> ... -> sizes[-1]`` with an activation between layers.

    Modules are named ``drop_in, fc0, act0, drop0, fc1, act1, drop1, ..., fc{n}`` (dropout
    modules only when their probability is > 0), so rules can target them (``"act*"`` for every
    hidden code, ``"fc*"`` for every Linear). Dropout follows each hidden activation
    (Srivastava et al. 2014 use 0.2 on inputs and 0.5 on hidden units).

    >>> mlp([64, 256, 10])
    Sequential(
      (fc0): Linear(in_features=64, out_features=256, bias=True)
      (act0): ReLU()
      (fc1): Linear(in_features=256, out_features=10, bias=True)
    )
    """
    if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise invalid("sizes", "mlp", "at least 2 positive ints", list(sizes))
    check_choice(activation, "activation", "mlp", ACTIVATIONS)
    dropout = check_probability(dropout, "dropout", "mlp")
    input_dropout = check_probability(input_dropout, "input_dropout", "mlp")
    layers: dict[str, nn.Module] = {}
    if input_dropout > 0:
        layers["drop_in"] = nn.Dropout(input_dropout)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers[f"fc{i}"] = nn.Linear(n_in, n_out)
        if i < len(sizes) - 2:
            layers[f"act{i}"] = ACTIVATIONS[activation]()
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
    return nn.Sequential(OrderedDict(layers))


def _sizes(path: str, value: Any) -> tuple[int, ...]:
    sizes = sequence_of(integer(1), what="a list of layer sizes (ints >= 1)")(path, value)
    if len(sizes) < 2:
        raise fail(path, "expected a list of at least 2 layer sizes", value)
    return sizes


@dataclass(frozen=True)
class MLPModel(Table):
    """``[model] kind = "mlp"`` (the default): :func:`mlp`. ``sizes`` must start with the
    dataset's input features and end with its number of classes."""

    kind: ClassVar[str] = "mlp"
    sizes: tuple[int, ...] = spec((64, 256, 256, 10), _sizes)
    activation: str = spec("relu", choice(*ACTIVATIONS))
    dropout: float = spec(0.0, number(0.0, below=1.0))
    input_dropout: float = spec(0.0, number(0.0, below=1.0))

    def check(self, data: DataConfig, where: KeyPath) -> None:
        dataset = data.dataset
        if dataset.features is not None and self.sizes[0] != data.features:
            raise fail(
                where("sizes"),
                f"must start with the {data.features} input features of '{data.name}'",
                list(self.sizes),
            )
        if dataset.classes is not None and self.sizes[-1] != dataset.classes:
            raise fail(
                where("sizes"),
                f"must end with the {dataset.classes} classes of '{data.name}'",
                list(self.sizes),
            )

    @property
    def stochastic(self) -> bool:
        """Whether training draws random numbers beyond initialisation and batch order."""
        return self.dropout > 0 or self.input_dropout > 0

    def build(self, data: DataConfig) -> nn.Sequential:
        del data
        return mlp(list(self.sizes), self.activation, self.dropout, self.input_dropout)


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
