"""Patches of natural images from the photographs bundled with scikit-image."""

from __future__ import annotations

import numpy as np
import torch

from reglab._optional import require
from reglab._validation import check_choice, check_positive_int

__all__ = ["BUNDLED_IMAGES", "image_patches"]

#: Photographs shipped inside the scikit-image wheel (others would be downloaded: not used).
BUNDLED_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "grass", "gravel", "brick", "moon")


def _gray(name: str) -> np.ndarray:
    data = require("skimage.data", "reglab.data.image_patches")
    color = require("skimage.color", "reglab.data.image_patches")
    image = getattr(data, name)()
    image = color.rgb2gray(image) if image.ndim == 3 else image / 255.0
    return image.astype(np.float64)


def image_patches(
    size: int = 8,
    n: int = 10000,
    seed: int = 0,
    normalize: str = "ufldl",
    images: tuple[str, ...] = BUNDLED_IMAGES,
) -> torch.Tensor:
    """Random ``size × size`` grey-level patches of natural photographs, normalised.

    Patches are drawn uniformly (seeded) from scikit-image's bundled photographs (only those
    that ship in its wheel: ``BUNDLED_IMAGES``), equally many per image. Normalisation:

    * ``"ufldl"`` (default; Ng's sparse-autoencoder exercise): remove each patch's mean,
      clip to ±3 standard deviations (over all patches), rescale to [0.1, 0.9] — suited to
      sigmoid outputs;
    * ``"zca"``: remove each patch's mean, then ZCA-whiten (``ε = 0.01`` · mean eigenvalue);
    * ``"none"``: raw intensities in [0, 1].

    Returns:
        float32 tensor ``(n, size * size)``.
    """
    size = check_positive_int(size, "size", "image_patches", minimum=2)
    n = check_positive_int(n, "n", "image_patches")
    check_choice(normalize, "normalize", "image_patches", ("ufldl", "zca", "none"))
    for name in images:
        check_choice(name, "images", "image_patches", BUNDLED_IMAGES)
    rng = np.random.default_rng(seed)
    per_image = np.bincount(np.arange(n) % len(images), minlength=len(images))
    patches = []
    for name, count in zip(images, per_image, strict=True):
        image = _gray(name)
        rows = rng.integers(0, image.shape[0] - size + 1, count)
        cols = rng.integers(0, image.shape[1] - size + 1, count)
        patches += [
            image[r : r + size, c : c + size].ravel() for r, c in zip(rows, cols, strict=True)
        ]
    x = np.stack(patches)[rng.permutation(n)]  # (n, size²)
    if normalize == "none":
        return torch.from_numpy(x.astype(np.float32))
    x = x - x.mean(axis=1, keepdims=True)
    if normalize == "ufldl":
        limit = 3 * x.std()
        x = (np.clip(x, -limit, limit) / limit + 1) * 0.4 + 0.1
    else:
        cov = x.T @ x / n
        eigvals, eigvecs = np.linalg.eigh(cov)
        eps = 0.01 * eigvals.mean()
        x = x @ eigvecs @ np.diag(1 / np.sqrt(eigvals + eps)) @ eigvecs.T
    return torch.from_numpy(x.astype(np.float32))
