"""Greedy layer-wise pre-training of an MLP with (denoising) autoencoders."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from reglab._validation import InvalidParameterError, check_choice
from reglab.autoencoders.base import Autoencoder
from reglab.autoencoders.denoising import DenoisingAutoencoder

__all__ = ["pretrain_layerwise"]


def pretrain_layerwise(
    mlp: nn.Sequential,
    X: torch.Tensor,
    kind: str = "autoencoder",
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    level: float = 0.25,
    corruption: str = "mask",
    seed: int = 0,
    return_autoencoders: bool = False,
) -> nn.Sequential | tuple[nn.Sequential, list[Autoencoder]]:
    """Initialise each hidden ``Linear`` of ``mlp`` as the encoder of an autoencoder.

    Bengio et al. (2007), Vincent et al. (2010): layer ``i`` (with the activation that follows
    it) is trained as the encoder of an autoencoder — a plain one, or a denoising one with
    ``kind="denoising"`` — whose input is the code of layer ``i − 1`` on ``X``; a fresh linear
    decoder is discarded afterwards. The output ``Linear`` is left as it is. The encoders *are*
    the MLP's own modules, so ``mlp`` is modified in place and returned, ready for supervised
    fine-tuning.

    Args:
        mlp: an ``nn.Sequential`` of ``Linear`` layers, each hidden one optionally followed by
            parameter-free activation modules (as ``reglab.lab.mlp`` builds).
        X: unlabelled inputs ``(N, d_in)``.
        kind: ``"autoencoder"`` or ``"denoising"``.
        epochs: training epochs of each autoencoder.
        lr: their learning rate.
        batch_size: their batch size.
        seed: seeds each autoencoder's training.
        level: the denoising corruption's level.
        corruption: the denoising corruption's kind.
        return_autoencoders: also return the trained autoencoders.
    """
    check_choice(kind, "kind", "pretrain_layerwise", ("autoencoder", "denoising"))
    layers = list(mlp)
    linear_at = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    if not isinstance(mlp, nn.Sequential) or len(linear_at) < 2:
        raise InvalidParameterError(
            "pretrain_layerwise needs an nn.Sequential with at least two Linear layers (hidden "
            f"and output). Got {type(mlp).__name__} with {len(linear_at)}."
        )
    autoencoders: list[Autoencoder] = []
    codes = X
    for start, stop in itertools.pairwise(linear_at):
        block = layers[start:stop]  # the Linear and its activation(s)
        if any(next(m.parameters(recurse=False), None) is not None for m in block[1:]):
            raise InvalidParameterError(
                "pretrain_layerwise: layers between two Linear layers must be parameter-free "
                "activations."
            )
        encoder = nn.Sequential(*block)
        linear = block[0]
        decoder = nn.Linear(linear.out_features, linear.in_features)
        torch.manual_seed(seed + start)
        decoder.reset_parameters()
        if kind == "denoising":
            ae: Autoencoder = DenoisingAutoencoder(encoder, decoder, corruption, level)
        else:
            ae = Autoencoder(encoder, decoder)
        ae.fit(codes, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        autoencoders.append(ae)
        with torch.no_grad():
            codes = encoder(codes)
    mlp.train()
    return (mlp, autoencoders) if return_autoencoders else mlp
