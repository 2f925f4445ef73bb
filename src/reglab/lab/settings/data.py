"""The data of a study's ``[data]`` table, as tensors."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from reglab.data import digits, fashion_mnist, image_patches, mnist, teacher_student
from reglab.lab.settings.schema import Table, boolean, choice, integer, number, spec

__all__ = ["DATASETS", "IMAGE_SHAPES", "DataConfig", "Dataset", "Split", "load_data"]


@dataclass(frozen=True)
class Dataset:
    """What a study needs to know about a dataset before loading it: input features (None:
    set by the study, e.g. ``inputs`` of the teacher), classes (None: not a classification
    set), training rows, and the image shape ``(C, H, W)`` of one input (None: not images)."""

    features: int | None
    classes: int | None
    train_rows: int | None
    image: tuple[int, int, int] | None


DATASETS = {
    "digits": Dataset(64, 10, 1347, (1, 8, 8)),
    "mnist": Dataset(784, 10, 60000, (1, 28, 28)),
    "fashion-mnist": Dataset(784, 10, 60000, (1, 28, 28)),
    "patches": Dataset(64, None, 16000, (1, 8, 8)),
    "teacher": Dataset(None, None, None, None),  # regression: inputs and rows are settings
    "gutenberg": Dataset(None, None, None, None),  # tokens: subset counts words
}
IMAGE_SHAPES = {name: d.image for name, d in DATASETS.items() if d.image is not None}


@dataclass(frozen=True)
class DataConfig(Table):
    """The ``[data]`` table."""

    name: str = spec("digits", choice(*DATASETS, listing=True))
    #: a seeded subset of the training rows (tokens for ``gutenberg``); 0 = all
    subset: int = spec(0, integer(0))
    #: centre and scale every feature with the training rows' statistics
    standardize: bool = spec(False, boolean())
    #: fraction of the training rows held out for validation
    validation: float = spec(0.0, number(0.0, below=1.0))
    #: keep labels on only this many training rows (the rest get -1); 0 keeps all
    labels: int = spec(0, integer(0))
    #: ``teacher``: input dimension
    inputs: int = spec(100, integer(1))
    #: ``teacher``: noise of the training targets
    noise: float = spec(0.5, number(0.0))

    @property
    def dataset(self) -> Dataset:
        return DATASETS[self.name]

    @property
    def features(self) -> int | None:
        return self.inputs if self.name == "teacher" else self.dataset.features


Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


def _hold_out(
    train: tuple[torch.Tensor, torch.Tensor], fraction: float, generator: torch.Generator
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """``(rest, validation)``: a seeded random ``fraction`` of the rows (at least one) held
    out; ``(train, None)`` when ``fraction`` is 0."""
    if fraction <= 0:
        return train, None
    x, y = train
    n_val = max(1, round(len(x) * fraction))
    rows = torch.randperm(len(x), generator=generator)
    return (x[rows[n_val:]], y[rows[n_val:]]), (x[rows[:n_val]], y[rows[:n_val]])


def load_data(
    data: DataConfig, seed: int = 0
) -> tuple[Split, tuple[torch.Tensor, torch.Tensor] | None]:
    """``((train, test), validation)`` for a study's ``[data]`` settings.

    ``subset`` keeps a seeded random subset of the training rows (the same for every trial);
    ``validation`` holds out that fraction of the training rows; ``standardize`` centres and
    scales every feature with statistics of the (remaining) training rows; ``labels = n``
    keeps the labels of ``n`` random training rows and sets the others to ``-1``
    (scikit-learn's "unlabelled"). The ``teacher`` regression problem is the one exception to
    "the same data for every trial": each ``seed`` draws a fresh teacher and sample, so seeds
    average over problem instances as Krogh & Hertz do; its validation rows are held out of
    that sample.
    """
    generator = torch.Generator().manual_seed(12345)
    if data.name == "teacher":  # validation rows: held out of this seed's training sample
        train, test = teacher_student(data.subset or 90, data.inputs, data.noise, seed=seed)
        train, val = _hold_out(train, data.validation, generator)
        return (train, test), val
    (x, y), (xt, yt) = _dataset(data.name)
    if data.subset:
        rows = torch.randperm(len(x), generator=generator)[: data.subset]
        x, y = x[rows], y[rows]
    (x, y), val = _hold_out((x, y), data.validation, generator)
    if data.standardize:
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        x, xt = (x - mean) / std, (xt - mean) / std
        val = None if val is None else ((val[0] - mean) / std, val[1])
    if data.labels:
        unlabelled = torch.randperm(len(x), generator=generator)[data.labels :]
        y = y.clone()
        y[unlabelled] = -1
    return ((x, y), (xt, yt)), val
