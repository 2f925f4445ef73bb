"""Model builders used by studies."""

from __future__ import annotations

import importlib
import itertools
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from reglab._validation import InvalidParameterError, check_choice, check_probability, invalid

__all__ = ["ACTIVATIONS", "build_model", "mlp"]

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


def build_model(model_cfg: dict[str, Any]) -> nn.Module:
    """The study's model: ``kind = "mlp"`` (reglab's ``mlp``) or
    ``kind = "factory"`` with ``factory = "package.module:function"`` (imported, then called
    with the ``options`` table as keyword arguments)."""
    if model_cfg["kind"] == "factory":
        module_name, _, attr = model_cfg["factory"].partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise InvalidParameterError(
                f"model.factory: cannot import {model_cfg['factory']!r} ({err}); expected "
                "'package.module:function' importable from here"
            ) from None
        return factory(**model_cfg.get("options", {}))
    return mlp(
        list(model_cfg["sizes"]),
        model_cfg["activation"],
        float(model_cfg["dropout"]),
        float(model_cfg["input_dropout"]),
    )
