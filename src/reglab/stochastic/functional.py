"""Stochastic regularizers as pure functions.

Each takes ``training`` and returns its input untouched (the same object) when it is off, so
evaluation costs nothing. Randomness comes from ``generator`` when given (it must live on the
input's device), else from torch's global generator. Drop masks are scaled by ``1/(1-p)`` during
training so expectations are preserved and inference needs no rescaling (the weight-scaling rule).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_coefficient, check_probability, invalid

__all__ = [
    "drop_block",
    "drop_connect",
    "drop_path",
    "embedding_dropout",
    "gaussian_dropout",
    "gaussian_noise",
    "locked_dropout",
]


def keep_mask(
    shape: tuple[int, ...] | list[int],
    p: float,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bernoulli(1-p) mask scaled by 1/(1-p), with ``like``'s dtype and device."""
    keep = 1.0 - p
    mask = torch.empty(shape, dtype=like.dtype, device=like.device)
    return mask.bernoulli_(keep, generator=generator).div_(keep)


def gaussian_noise(
    x: torch.Tensor, std: float, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Additive noise ``x + std * N(0, 1)`` during training (Keras' ``GaussianNoise``, without a
    cap on ``std``); identity otherwise.

    >>> x = torch.ones(3)
    >>> gaussian_noise(x, 0.1, training=False) is x
    True
    """
    std = check_coefficient(std, "std", "gaussian_noise")
    if not training or std == 0.0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + noise.mul_(std)


def gaussian_dropout(
    x: torch.Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Multiplicative noise ``x * N(1, p / (1 - p))`` during training (Srivastava et al. 2014,
    §10; Keras' ``GaussianDropout``): the same mean and variance as dropout with rate ``p``.
    Identity otherwise."""
    p = check_probability(p, "p", "gaussian_dropout")
    if not training or p == 0.0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x * noise.mul_(math.sqrt(p / (1.0 - p))).add_(1.0)


def locked_dropout(
    x: torch.Tensor,
    p: float,
    training: bool = True,
    batch_first: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Variational ("locked") dropout: one mask per sequence, shared over every time step
    (Gal & Ghahramani 2016; AWD-LSTM's ``LockedDropout``).

    Shape:
        ``(T, B, *)``, or ``(B, T, *)`` with ``batch_first=True``; the mask is ``(1, B, *)`` /
        ``(B, 1, *)``.
    """
    p = check_probability(p, "p", "locked_dropout")
    if not training or p == 0.0:
        return x
    if x.ndim < 2:
        raise invalid("x", "locked_dropout", "a tensor with time and batch dims", tuple(x.shape))
    shape = list(x.shape)
    shape[1 if batch_first else 0] = 1
    return x * keep_mask(shape, p, x, generator)


def drop_connect(
    weight: torch.Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DropConnect (Wan et al. 2013): zero each *weight* with probability ``p`` and scale the
    rest by ``1/(1-p)``; one mask per call (per mini-batch). Identity otherwise."""
    p = check_probability(p, "p", "drop_connect")
    if not training or p == 0.0:
        return weight
    return weight * keep_mask(weight.shape, p, weight, generator)


def embedding_dropout(
    embedding: nn.Embedding,
    words: torch.Tensor,
    p: float,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Look up ``words`` in ``embedding`` with whole word vectors dropped (AWD-LSTM).

    Each row of the embedding matrix (a word type, not a token occurrence) is zeroed with
    probability ``p`` and the kept rows are scaled by ``1/(1-p)``, so every occurrence of a
    dropped word in the batch is dropped. Identity lookup when not training.

    Shape:
        ``words`` of any shape ``(*)`` -> ``(*, embedding_dim)``.
    """
    p = check_probability(p, "p", "embedding_dropout")
    weight = embedding.weight
    if training and p > 0.0:
        weight = weight * keep_mask((weight.shape[0], 1), p, weight, generator)
    return F.embedding(
        words,
        weight,
        embedding.padding_idx,
        embedding.max_norm,
        embedding.norm_type,
        embedding.scale_grad_by_freq,
        embedding.sparse,
    )


def drop_path(
    x: torch.Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Stochastic depth / DropPath (Huang et al. 2016; timm's ``drop_path``): drop a residual
    branch's output for whole samples with probability ``p`` and scale the kept ones by
    ``1/(1-p)``. Use it on the branch, ``x + drop_path(f(x), p)``: a dropped sample passes
    through the identity. Identity otherwise.

    Shape:
        ``(B, *)``; the mask is ``(B, 1, ..., 1)`` (one draw per sample).
    """
    p = check_probability(p, "p", "drop_path")
    if not training or p == 0.0:
        return x
    return x * keep_mask((x.shape[0],) + (1,) * (x.ndim - 1), p, x, generator)


def drop_block(
    x: torch.Tensor,
    p: float,
    block_size: int = 7,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock (Ghiasi et al. 2018): zero contiguous ``block_size × block_size`` squares of
    each feature map, so that a convolution cannot recover a dropped unit from its neighbours.

    Block centres are drawn per sample and channel with rate
    ``γ = p / b² · HW / ((H − b + 1)(W − b + 1))`` (``b`` clipped to the map), which makes about
    a fraction ``p`` of the units dropped before blocks overlap; each block is the ``b × b``
    square around its centre, cut at the border. Kept units are scaled by
    ``numel / kept`` over the whole batch (the paper's normalisation), so the sum of the
    features is preserved exactly. Identity otherwise.

    Shape:
        ``(B, C, H, W)``.
    """
    p = check_probability(p, "p", "drop_block")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise invalid("block_size", "drop_block", "an int >= 1", block_size)
    if not training or p == 0.0:
        return x
    if x.ndim != 4:
        raise invalid("x", "drop_block", "a (B, C, H, W) tensor", tuple(x.shape))
    height, width = x.shape[-2:]
    b = min(block_size, height, width)
    gamma = p / b**2 * height * width / ((height - b + 1) * (width - b + 1))
    centres = torch.empty_like(x)  # batched under vmap: per-member draws in a ModelStack
    centres.bernoulli_(min(gamma, 1.0), generator=generator)
    # A max-pool with a b × b window spreads each centre over its block (cut to H × W).
    dropped = F.max_pool2d(centres, b, stride=1, padding=b // 2)[..., :height, :width]
    keep = 1.0 - dropped
    return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))
