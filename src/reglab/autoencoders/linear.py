"""The linear autoencoder and its relation to PCA."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from reglab._optional import require
from reglab._validation import check_positive_int
from reglab.autoencoders.base import Autoencoder

__all__ = ["LinearAutoencoder", "principal_angles"]


class LinearAutoencoder(Autoencoder):
    """``x̂ = W_dec W_enc x`` with no biases or nonlinearity.

    Trained on centred data with a squared loss, its decoder spans the top-``k`` principal
    subspace (Baldi & Hornik 1989), though its columns need not be the principal directions
    themselves (any basis of the subspace is optimal). Compare with ``principal_angles``.
    """

    def __init__(self, d_in: int, k: int) -> None:
        d_in = check_positive_int(d_in, "d_in", "LinearAutoencoder")
        k = check_positive_int(k, "k", "LinearAutoencoder")
        super().__init__(nn.Linear(d_in, k, bias=False), nn.Linear(k, d_in, bias=False))


def principal_angles(ae: LinearAutoencoder, X: torch.Tensor) -> np.ndarray:
    """Principal angles (radians, ascending) between the span of ``ae``'s decoder columns and
    the top-k principal subspace of ``X`` (scikit-learn's PCA, which centres ``X``).

    All zero means the same subspace; the largest angle is the worst-aligned direction.
    """
    linalg = require("scipy.linalg", "reglab.autoencoders.principal_angles")
    decomposition = require("sklearn.decomposition", "reglab.autoencoders.principal_angles")
    decoder = ae.decoder.weight.detach().double().cpu().numpy()  # (d_in, k)
    k = decoder.shape[1]
    pca = decomposition.PCA(n_components=k).fit(X.detach().double().cpu().numpy())
    return np.sort(linalg.subspace_angles(decoder, pca.components_.T))
