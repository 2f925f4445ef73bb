"""Noise injection modules: additive Gaussian noise and Gaussian dropout."""

from __future__ import annotations

import torch
from torch import nn

from reglab._validation import check_coefficient, check_probability
from reglab.stochastic.functional import gaussian_dropout, gaussian_noise

__all__ = ["GaussianDropout", "GaussianNoise"]


class GaussianNoise(nn.Module):
    """Add ``std * N(0, 1)`` noise in training mode; identity in eval mode.

    Noise on the inputs is equivalent, for small ``std`` and a squared loss, to a penalty on the
    norm of the model's input gradient (Bishop 1995): a Tikhonov regularizer.

    Args:
        std: standard deviation, a finite number >= 0 (no cap at 1, unlike some frameworks).
        generator: optional ``torch.Generator`` on the input's device.

    Shape:
        Any; output has the input's shape.

    >>> layer = GaussianNoise(0.1).eval()
    >>> x = torch.ones(2, 3)
    >>> bool((layer(x) == x).all())
    True
    """

    def __init__(self, std: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.std = check_coefficient(std, "std", "GaussianNoise")
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(x, self.std, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"std={self.std}"


class GaussianDropout(nn.Module):
    """Multiply by ``N(1, p / (1 - p))`` noise in training mode; identity in eval mode.

    Srivastava et al. (2014) §10: Gaussian multiplicative noise with the variance of dropout at
    rate ``p``; the mean is 1, so no rescaling at inference.

    Args:
        p: the equivalent drop probability, in [0, 1).
        generator: optional ``torch.Generator`` on the input's device.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = check_probability(p, "p", "GaussianDropout")
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
