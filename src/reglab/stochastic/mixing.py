"""Batch transforms that mix examples and their labels: mixup and CutMix, with timm's
semantics.

Each takes a batch ``(x, y)`` of inputs and class indices and returns ``(x_mixed, targets)``
where ``targets`` are soft labels ``(B, num_classes)``, for a loss that accepts class
probabilities (``F.cross_entropy`` does). Every sample is mixed with its mirror in the batch
(sample ``i`` with ``B − 1 − i``, timm's ``flip``), with one ``λ ~ Beta(α, α)`` per batch.
``label_smoothing=ε`` smooths both one-hot labels first (``1 − ε + ε/C`` on the class,
``ε/C`` elsewhere), so mixing and smoothing combine as in timm. Not training: ``x`` unchanged
and one-hot (smoothed) targets.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_coefficient, check_positive_int, check_probability, invalid

__all__ = ["CutMix", "MixUp", "cutmix", "mixup", "soft_targets"]


def soft_targets(y: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """One-hot ``(B, num_classes)`` rows of ``y``, smoothed: ``1 − ε + ε/C`` and ``ε/C``."""
    eps = check_probability(label_smoothing, "label_smoothing", "soft_targets")
    off = eps / num_classes
    return F.one_hot(y.long(), num_classes).to(torch.float32).mul_(1.0 - eps).add_(off)


def _lam(alpha: float, generator: torch.Generator | None) -> float:
    """``λ ~ Beta(α, α)``, one per batch, from torch's random stream (``generator``, else the
    global one, so ``torch.manual_seed`` reproduces it); a Python float, so using it costs no
    device synchronisation."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _check(x: torch.Tensor, y: torch.Tensor, num_classes: int, owner: str) -> None:
    check_positive_int(num_classes, "num_classes", owner)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise invalid("y", owner, f"class indices of shape ({x.shape[0]},)", tuple(y.shape))


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    alpha: float = 0.2,
    label_smoothing: float = 0.0,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mixup (Zhang et al. 2018): ``x' = λ·x + (1 − λ)·x.flip(0)``, targets mixed the same way.

    Shape:
        ``x`` ``(B, *)``, ``y`` ``(B,)`` -> ``(B, *)``, ``(B, num_classes)``.

    >>> x, y = torch.eye(2), torch.tensor([0, 1])
    >>> mixup(x, y, 2, training=False)[1]
    tensor([[1., 0.],
            [0., 1.]])
    """
    _check(x, y, num_classes, "mixup")
    alpha = check_coefficient(alpha, "alpha", "mixup")
    targets = soft_targets(y, num_classes, label_smoothing).to(x.device)
    if not training or alpha == 0.0:
        return x, targets
    lam = _lam(alpha, generator)
    return x.mul(lam).add_(x.flip(0), alpha=1.0 - lam), targets.mul(lam).add_(
        targets.flip(0), alpha=1.0 - lam
    )


def cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of CutMix's box for ``λ``: sides ``√(1 − λ)`` of the
    image's, centred at a uniform random pixel, clipped to the image (timm's ``rand_bbox``)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, (1,), generator=generator))
    cx = int(torch.randint(0, width, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def cutmix(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
    training: bool = True,
    generator: torch.Generator | None = None,
    image_shape: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019): paste a box of ``x.flip(0)`` into ``x``; the targets mix with
    ``λ = 1 − box area / image area`` (the area-corrected λ: the box is clipped at the border,
    so the drawn λ is not the pasted fraction).

    Shape:
        ``x`` ``(B, C, H, W)`` (or ``(B, H·W)`` with ``image_shape=(H, W)``), ``y`` ``(B,)``
        -> ``x``'s shape, ``(B, num_classes)``.
    """
    _check(x, y, num_classes, "cutmix")
    alpha = check_coefficient(alpha, "alpha", "cutmix")
    targets = soft_targets(y, num_classes, label_smoothing).to(x.device)
    if not training or alpha == 0.0:
        return x, targets
    flat = x.shape
    if image_shape is not None:
        x = x.reshape(flat[0], -1, *image_shape)
    if x.ndim != 4:
        raise invalid("x", "cutmix", "(B, C, H, W), or (B, H·W) with image_shape", tuple(flat))
    height, width = x.shape[-2:]
    top, bottom, left, right = cutmix_box(height, width, _lam(alpha, generator), generator)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x.flip(0)[..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed.reshape(flat), targets.mul(lam).add_(targets.flip(0), alpha=1.0 - lam)


class MixUp(nn.Module):
    """:func:`mixup` as a module: ``mix(x, y) -> (x', soft targets)`` in training mode.

    Args:
        num_classes: number of classes ``C``.
        alpha: Beta(α, α) concentration (timm's default 0.8; 0.2 in the paper's ImageNet run).
        label_smoothing: ε applied to the one-hot labels before mixing.
        generator: optional CPU ``torch.Generator`` (λ is drawn on the CPU).
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.2,
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes", "MixUp")
        self.alpha = check_coefficient(alpha, "alpha", "MixUp")
        self.label_smoothing = check_probability(label_smoothing, "label_smoothing", "MixUp")
        self.generator = generator

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mixup(
            x, y, self.num_classes, self.alpha, self.label_smoothing, self.training, self.generator
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}"


class CutMix(nn.Module):
    """:func:`cutmix` as a module: ``mix(x, y) -> (x', soft targets)`` in training mode.

    Args:
        num_classes: number of classes ``C``.
        alpha: Beta(α, α) concentration (1.0 in the paper and timm).
        label_smoothing: ε applied to the one-hot labels before mixing.
        image_shape: ``(H, W)`` when batches are flattened ``(B, H·W)``.
        generator: optional CPU ``torch.Generator``.
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 1.0,
        label_smoothing: float = 0.0,
        image_shape: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes", "CutMix")
        self.alpha = check_coefficient(alpha, "alpha", "CutMix")
        self.label_smoothing = check_probability(label_smoothing, "label_smoothing", "CutMix")
        self.image_shape = image_shape
        self.generator = generator

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cutmix(
            x,
            y,
            self.num_classes,
            self.alpha,
            self.label_smoothing,
            self.training,
            self.generator,
            self.image_shape,
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}"
