"""Regularizers for convolutional networks: DropPath (stochastic depth) and DropBlock.

Spatial dropout is torch's own ``nn.Dropout2d`` (whole channels); reglab does not rewrite it.
"""

from __future__ import annotations

import torch
from torch import nn

from reglab._validation import check_probability, invalid
from reglab.stochastic.functional import drop_block, drop_path

__all__ = ["DropBlock", "DropPath"]


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training mode, zero the input for whole samples
    with probability ``p`` and scale the others by ``1/(1-p)``; identity in eval mode. Put it on
    a residual branch, ``x + drop_path(branch(x))``, so that a dropped sample skips the block.

    Args:
        p: drop probability, in [0, 1).
        generator: optional ``torch.Generator`` on the input's device.

    Shape:
        ``(B, *)``; output has the input's shape.

    >>> layer = DropPath(0.5).eval()
    >>> x = torch.ones(4, 3)
    >>> layer(x) is x
    True
    """

    def __init__(self, p: float = 0.1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = check_probability(p, "p", "DropPath")
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018): in training mode, zero ``block_size × block_size``
    squares of each feature map (about a fraction ``p`` of the units) and rescale so the sum
    of the features is unchanged; identity in eval mode. See
    :func:`reglab.stochastic.functional.drop_block`.

    Args:
        p: the fraction of units to drop, in [0, 1).
        block_size: side of the square blocks (clipped to the feature map).
        generator: optional ``torch.Generator`` on the input's device.

    Shape:
        ``(B, C, H, W)``; output has the input's shape.
    """

    def __init__(
        self, p: float = 0.1, block_size: int = 7, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.p = check_probability(p, "p", "DropBlock")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise invalid("block_size", "DropBlock", "an int >= 1", block_size)
        self.block_size = block_size
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block(x, self.p, self.block_size, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"
