"""Model builders used by studies."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from reglab._validation import check_choice, check_probability, invalid

__all__ = ["ACTIVATIONS", "mlp"]

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
