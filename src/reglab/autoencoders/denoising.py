"""Denoising autoencoders (Vincent et al. 2008, 2010): reconstruct the clean input."""

from __future__ import annotations

import torch
from torch import nn

from reglab._validation import check_choice, check_coefficient, invalid
from reglab.autoencoders.base import AEOutput, Autoencoder

__all__ = ["CORRUPTIONS", "DenoisingAutoencoder", "corrupt"]

CORRUPTIONS = ("mask", "gaussian", "salt_pepper")


def corrupt(
    x: torch.Tensor, corruption: str, level: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Corrupt a batch: ``"mask"`` zeroes each entry with probability ``level`` (no rescaling,
    Vincent's masking noise); ``"gaussian"`` adds ``level · N(0, 1)``; ``"salt_pepper"`` sets a
    fraction ``level`` of the entries to the batch minimum or maximum with equal odds."""
    check_choice(corruption, "corruption", "corrupt", CORRUPTIONS)
    if corruption == "gaussian":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + level * noise
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    if corruption == "mask":
        return x.masked_fill(hit, 0.0)
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    noisy = torch.where(salt, x.max(), x.min())
    return torch.where(hit, noisy, x)


class DenoisingAutoencoder(Autoencoder):
    """An autoencoder trained to reconstruct the **clean** input from a corrupted one.

    In training mode ``forward`` corrupts its input (``corruption``, ``level``) before encoding;
    ``loss`` compares the reconstruction with the target it is given, which ``fit`` sets to
    the clean ``X``. In eval mode nothing is corrupted. Denoising is a regularizer that makes the
    code capture the data's structure (Vincent et al. 2010) and a pre-training criterion.

    Args:
        encoder: as ``Autoencoder``.
        decoder: as ``Autoencoder``.
        tied: as ``Autoencoder``.
        corruption: ``"mask"`` (default), ``"gaussian"`` or ``"salt_pepper"``.
        level: masking/salt-and-pepper probability in [0, 1), or Gaussian standard deviation.
        generator: optional ``torch.Generator`` for the corruption.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        corruption: str = "mask",
        level: float = 0.25,
        tied: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(encoder, decoder, tied=tied)
        self.corruption = check_choice(
            corruption, "corruption", "DenoisingAutoencoder", CORRUPTIONS
        )
        self.level = check_coefficient(level, "level", "DenoisingAutoencoder")
        if corruption != "gaussian" and self.level >= 1:
            raise invalid("level", "DenoisingAutoencoder", "a probability in [0, 1)", level)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> AEOutput:
        seen = corrupt(x, self.corruption, self.level, self.generator) if self.training else x
        code = self.encoder(seen)
        return AEOutput(self.decoder(code), code, seen)

    def extra_repr(self) -> str:
        return f"corruption={self.corruption!r}, level={self.level}"
