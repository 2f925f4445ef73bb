"""Perturb a module's *weights* during training: DropConnect / WeightDrop and weight noise."""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from reglab._validation import InvalidParameterError, check_coefficient, check_probability
from reglab.stochastic.functional import drop_connect, gaussian_noise

__all__ = ["DropConnect", "WeightDrop", "WeightNoise"]


class _PerturbedWeights(nn.Module, abc.ABC):
    """Run ``module`` with some of its parameters replaced by perturbed copies in training mode.

    The parameters themselves are never modified or re-registered: the perturbed tensors are
    passed with ``torch.func.functional_call``, so optimizers, ``state_dict`` (keys prefixed
    with ``module.``), ``.to()`` and today's ``nn.LSTM`` (which re-reads its weights on every
    call) all keep working. One perturbation is drawn per forward call.
    """

    def __init__(self, module: nn.Module, names: str | Iterable[str], owner: str) -> None:
        super().__init__()
        names = [names] if isinstance(names, str) else list(names)
        available = dict(module.named_parameters())
        missing = [n for n in names if n not in available]
        if not names or missing:
            raise InvalidParameterError(
                f"The 'names' parameter of {owner} must name parameters of "
                f"{type(module).__name__}. Got {missing or names!r}; available: "
                f"{', '.join(available)}."
            )
        self.module = module
        self.names = tuple(names)

    @abc.abstractmethod
    def perturb(self, weight: torch.Tensor) -> torch.Tensor:
        """Return a perturbed copy of ``weight`` (called in training mode only)."""

    @abc.abstractmethod
    def is_identity(self) -> bool:
        """True when the perturbation does nothing (p = 0 or std = 0)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.training or self.is_identity():
            return self.module(*args, **kwargs)
        # getattr, not get_parameter: under functional_call (a ModelStack's vmap) the
        # parameters are plain tensors
        weights = {
            name: self.perturb(functools.reduce(getattr, name.split("."), self.module))
            for name in self.names
        }
        return functional_call(self.module, weights, args, kwargs)


class WeightDrop(_PerturbedWeights):
    """DropConnect on named weights of any module, e.g. ``nn.LSTM``'s ``weight_hh_l0``.

    AWD-LSTM's regularizer of the recurrent matrices: in training mode each listed weight has
    entries zeroed with probability ``p`` (kept ones scaled by ``1/(1-p)``), one mask per forward
    call — so the same dropped matrix is used at every time step. Never drops in eval mode.

    Args:
        module: the module to wrap.
        names: parameter name(s) of ``module`` to drop (``"weight_hh_l0"``).
        p: drop probability in [0, 1).
        generator: optional ``torch.Generator`` on the weights' device.

    >>> lstm = WeightDrop(nn.LSTM(4, 8), ["weight_hh_l0"], p=0.5)
    >>> out, (h, c) = lstm(torch.randn(5, 2, 4))
    >>> tuple(out.shape)
    (5, 2, 8)
    """

    def __init__(
        self,
        module: nn.Module,
        names: str | Iterable[str],
        p: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(module, names, "WeightDrop")
        self.p = check_probability(p, "p", "WeightDrop")
        self.generator = generator

    def perturb(self, weight: torch.Tensor) -> torch.Tensor:
        return drop_connect(weight, self.p, True, self.generator)

    def is_identity(self) -> bool:
        return self.p == 0.0

    def extra_repr(self) -> str:
        return f"names={list(self.names)}, p={self.p}"


class WeightNoise(_PerturbedWeights):
    """Add ``std * N(0, 1)`` to named weights of a module in training mode (Graves 2011).

    A fresh draw per forward call; identity in eval mode. For a squared loss, small weight noise
    acts like a penalty on the sensitivity of the output to the weights, pushing toward flat
    minima (Deep Learning book §7.5).

    Args:
        module: the module to wrap.
        names: parameter name(s) to perturb. Default ``"weight"``.
        std: noise standard deviation, a finite number >= 0.
        generator: optional ``torch.Generator`` on the weights' device.
    """

    def __init__(
        self,
        module: nn.Module,
        names: str | Iterable[str] = "weight",
        std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(module, names, "WeightNoise")
        self.std = check_coefficient(std, "std", "WeightNoise")
        self.generator = generator

    def perturb(self, weight: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(weight, self.std, True, self.generator)

    def is_identity(self) -> bool:
        return self.std == 0.0

    def extra_repr(self) -> str:
        return f"names={list(self.names)}, std={self.std}"


class DropConnect(nn.Linear):
    """A ``Linear`` layer whose weight entries are dropped in training mode (Wan et al. 2013).

    ``y = x (W ⊙ M)ᵀ / (1 - p) + b`` with ``M ~ Bernoulli(1 - p)`` drawn once per forward call;
    ``y = x Wᵀ + b`` in eval mode (the weight-scaling rule). Parameters and ``state_dict`` are
    exactly ``nn.Linear``'s, so a trained layer loads into a plain ``Linear``.

    Args:
        in_features: as ``nn.Linear``.
        out_features: as ``nn.Linear``.
        bias: as ``nn.Linear``.
        device: as ``nn.Linear``.
        dtype: as ``nn.Linear``.
        p: drop probability in [0, 1). Default 0.5.
        generator: optional ``torch.Generator`` on the weight's device.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p = check_probability(p, "p", "DropConnect")
        self.generator = generator

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float = 0.5) -> DropConnect:
        """A DropConnect layer sharing ``linear``'s parameters (no copy)."""
        layer = cls(
            linear.in_features, linear.out_features, linear.bias is not None, p, device="meta"
        )
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = drop_connect(self.weight, self.p, self.training, self.generator)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"
