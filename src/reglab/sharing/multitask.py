"""Representation sharing: multi-task heads on one trunk, and semi-supervised learning."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_coefficient, invalid

__all__ = ["MultiTask", "SemiSupervised", "SemiSupervisedOutput"]


class MultiTask(nn.Module):
    """One shared trunk, one head per task: ``{task: head(trunk(x))}``.

    Sharing the trunk's parameters across tasks is a regularizer (Deep Learning book §7.7):
    each task's data constrain the shared representation. Train with per-task losses,
    ``fit(model, (x, {"digit": y, "parity": y % 2}), loss={"digit": ce, "parity": ce},
    loss_weights={"parity": 0.5}, ...)``.

    Shape:
        ``x`` -> dict of each head's output.
    """

    def __init__(self, trunk: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise invalid("heads", "MultiTask", "a non-empty dict of modules", heads)
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(x)
        return {task: head(shared) for task, head in self.heads.items()}


class SemiSupervisedOutput(NamedTuple):
    """What ``SemiSupervised`` returns: logits, reconstruction, and the inputs."""

    logits: torch.Tensor
    reconstruction: torch.Tensor
    inputs: torch.Tensor


class SemiSupervised(nn.Module):
    """A classifier and an autoencoder sharing one encoder (Deep Learning book §7.6).

    ``h = encoder(x)``; ``logits = classifier(h)``; ``reconstruction = decoder(h)``. Its
    ``loss`` is cross-entropy on the *labelled* rows (label ``>= 0``; unlabelled rows carry
    ``-1``, scikit-learn's convention) plus ``recon_weight ·`` mean squared reconstruction
    error on *all* rows, so unlabelled data shape the encoder. Train with
    ``fit(model, (x, y_with_minus_ones), loss=model.loss, ...)``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        recon_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.classifier = encoder, decoder, classifier
        self.recon_weight = check_coefficient(recon_weight, "recon_weight", "SemiSupervised")

    def forward(self, x: torch.Tensor) -> SemiSupervisedOutput:
        h = self.encoder(x)
        return SemiSupervisedOutput(self.classifier(h), self.decoder(h), x)

    def loss(self, output: SemiSupervisedOutput, y: torch.Tensor) -> torch.Tensor:
        """CE over rows with ``y >= 0`` (0 if none) + ``recon_weight`` · MSE over all rows."""
        labelled = y >= 0
        reconstruction = F.mse_loss(output.reconstruction, output.inputs)
        if not bool(labelled.any()):
            return self.recon_weight * reconstruction
        ce = F.cross_entropy(output.logits[labelled], y[labelled])
        return ce + self.recon_weight * reconstruction

    def extra_repr(self) -> str:
        return f"recon_weight={self.recon_weight}"
