"""The data of a study's ``[data]`` table, as tensors."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from reglab.data import digits, fashion_mnist, image_patches, mnist, teacher_student

__all__ = ["IMAGE_SHAPES", "Split", "image_shape", "load_data"]


Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


IMAGE_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "patches": (1, 8, 8),
}


@lru_cache(maxsize=4)
def _patches() -> Split:
    """20,000 ZCA-whitened 8x8 natural-image patches, 16,000 / 4,000 (labels are all 0)."""
    x = image_patches(size=8, n=20000, seed=0, normalize="zca")
    y = torch.zeros(len(x), dtype=torch.long)
    return (x[:16000], y[:16000]), (x[16000:], y[16000:])


def _dataset(name: str) -> Split:
    loaders = {
        "digits": digits,
        "mnist": mnist,
        "fashion-mnist": fashion_mnist,
        "patches": _patches,
    }
    return loaders[name]()


def load_data(
    data: dict[str, Any], seed: int = 0
) -> tuple[Split, tuple[torch.Tensor, torch.Tensor] | None]:
    """``((train, test), validation)`` for a study's ``[data]`` settings.

    ``subset`` keeps a seeded random subset of the training rows (the same for every trial);
    ``validation`` holds out that fraction of the training rows; ``standardize`` centres and
    scales every feature with statistics of the (remaining) training rows; ``labels = n``
    keeps the labels of ``n`` random training rows and sets the others to ``-1``
    (scikit-learn's "unlabelled"). The ``teacher`` regression problem is the one exception to
    "the same data for every trial": each ``seed`` draws a fresh teacher and sample, so seeds
    average over problem instances as Krogh & Hertz do.
    """
    if data["name"] == "teacher":
        return teacher_student(
            int(data["subset"]) or 90, int(data["inputs"]), float(data["noise"]), seed=seed
        ), None
    (x, y), (xt, yt) = _dataset(data["name"])
    generator = torch.Generator().manual_seed(12345)
    if data["subset"]:
        rows = torch.randperm(len(x), generator=generator)[: int(data["subset"])]
        x, y = x[rows], y[rows]
    val = None
    if data["validation"] > 0:
        n_val = max(1, round(len(x) * float(data["validation"])))
        rows = torch.randperm(len(x), generator=generator)
        val = (x[rows[:n_val]], y[rows[:n_val]])
        x, y = x[rows[n_val:]], y[rows[n_val:]]
    if data["standardize"]:
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        x, xt = (x - mean) / std, (xt - mean) / std
        val = None if val is None else ((val[0] - mean) / std, val[1])
    if data["labels"]:
        unlabelled = torch.randperm(len(x), generator=generator)[int(data["labels"]) :]
        y = y.clone()
        y[unlabelled] = -1
    return ((x, y), (xt, yt)), val


def image_shape(study: Any) -> tuple[int, int] | None:
    """(h, w) of one input image of the study's dataset (for filter pictures); None when its
    inputs are not images (teacher, gutenberg)."""
    shape = IMAGE_SHAPES.get(study.data["name"])
    return None if shape is None else shape[1:]
