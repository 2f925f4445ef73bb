"""The ``mlp`` kind: reglab's multilayer perceptron, its ``[model]`` table, and the classifier
trial that trains it (every classifier technique applies; grid points stack)."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from reglab._validation import check_choice, check_probability, invalid
from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import (
    KeyPath,
    Table,
    choice,
    fail,
    integer,
    number,
    sequence_of,
    spec,
)
from reglab.lab.work.classifier import build_network, run_classifier

__all__ = ["ACTIVATIONS", "KIND", "MLPModel", "mlp"]

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
                f"must start with the {data.features} input features of '{data.title}'",
                list(self.sizes),
            )
        if dataset.classes is not None and self.sizes[-1] != dataset.classes:
            raise fail(
                where("sizes"),
                f"must end with the {dataset.classes} classes of '{data.title}'",
                list(self.sizes),
            )

    @property
    def stochastic(self) -> bool:
        """Whether training draws random numbers beyond initialisation and batch order."""
        return self.dropout > 0 or self.input_dropout > 0

    def build(self, data: DataConfig) -> nn.Sequential:
        del data
        return mlp(list(self.sizes), self.activation, self.dropout, self.input_dropout)


KIND = register(
    Kind(
        "mlp",
        MLPModel,
        "classifier",
        network=build_network,
        run=run_classifier,
        stackable=True,
        order=0,
    )
)
