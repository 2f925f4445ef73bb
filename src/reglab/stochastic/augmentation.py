"""Data augmentation as batch transforms, built on kornia (pure PyTorch, differentiable)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reglab._optional import require
from reglab._validation import check_coefficient, invalid

__all__ = ["RandomAffine"]


class RandomAffine(nn.Module):
    """Random rotation, translation and scaling of a batch of images, one draw per sample.

    A thin wrapper over ``kornia.augmentation.RandomAffine`` that also accepts *flattened*
    images (e.g. digits as ``(N, 64)``): give ``image_shape`` and the batch is reshaped to
    ``(N, *image_shape)``, transformed and flattened back. Active in training mode only, like
    dropout; randomness comes from torch's global generator (seed it with ``torch.manual_seed``).
    Pass it as ``fit(..., transform=RandomAffine(...))`` to augment training batches.

    Args:
        degrees: maximum absolute rotation in degrees.
        translate: maximum shift as a fraction of width and height.
        scale: range ``(low, high)`` of the zoom factor.
        image_shape: ``(C, H, W)`` of flattened inputs; ``None`` for ``(N, C, H, W)`` inputs.

    Shape:
        ``(N, C, H, W)``, or ``(N, C*H*W)`` with ``image_shape``; output has the input's shape.
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: Sequence[float] = (0.9, 1.1),
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        augmentation = require("kornia.augmentation", "reglab.stochastic.RandomAffine")
        self.degrees = check_coefficient(degrees, "degrees", "RandomAffine")
        self.translate = check_coefficient(translate, "translate", "RandomAffine")
        scale = tuple(float(s) for s in scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise invalid("scale", "RandomAffine", "(low, high) with 0 < low <= high", scale)
        self.scale = scale
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self._affine = augmentation.RandomAffine(
            degrees=self.degrees, translate=(self.translate, self.translate), scale=scale, p=1.0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.image_shape is None:
            return self._affine(x)
        images = x.reshape(x.shape[0], *self.image_shape)
        return self._affine(images).reshape(x.shape)

    def extra_repr(self) -> str:
        return (
            f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}, "
            f"image_shape={self.image_shape}"
        )
