"""The data of a study's ``[data]`` table, as tensors.

``[data]`` names a built-in dataset (``name = "digits"``, ...) or the user's own data
(``format = "npz" | "npy" | "csv" | "parquet" | "images" | "hf"`` with ``path``; the readers
are :mod:`reglab.lab.sources`). Own data is read and checked when the study is parsed (every
error names its key path), so its ``features``, ``classes`` and image shape are known to the
model checks (``sizes``, the convnet kinds) before anything trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from reglab.data import digits, fashion_mnist, image_patches, mnist, teacher_student
from reglab.lab.settings.schema import (
    Table,
    boolean,
    choice,
    fail,
    integer,
    key_path,
    number,
    spec,
)
from reglab.lab.sources import load_source, parse_source

__all__ = [
    "DATASETS",
    "IMAGE_SHAPES",
    "SOURCE_KEYS",
    "DataConfig",
    "Dataset",
    "Split",
    "anchor",
    "load_data",
]

#: The lab's own ``[data]`` keys that apply to a ``format = ...`` source too (the other
#: keys of the table belong to the format: :mod:`reglab.lab.sources`).
SOURCE_KEYS = ("subset", "standardize", "validation", "labels")


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
    """The ``[data]`` table: a built-in dataset (``name``) or, with ``format``, the user's
    own data (``source``, read and checked at parse time; see :meth:`parse`)."""

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

    #: the user's data (``[data] format = ...``), a parsed
    #: :class:`~reglab.lab.sources.Source`; None for a built-in ``name``
    source: Any = spec(None)

    @classmethod
    def keys(cls) -> list[str]:
        return [k for k in super().keys() if k != "source"]  # noqa: SIM118

    @classmethod
    def parse(cls, raw: Any, path: str, origins: Mapping[str, str] | None = None) -> DataConfig:
        """A built-in dataset's table, or — when ``raw`` has ``format`` — the user's data:
        :data:`SOURCE_KEYS` are the lab's, every other key the format's. The source is read
        and checked now (:func:`reglab.lab.sources.load_source`, cached), so a missing file,
        a bad label or too few rows fail here with the key path. ``path`` / ``test_path``
        that are still relative are taken from the working directory
        (:func:`~reglab.lab.settings.studyfile.parse_study` makes them absolute against the
        study file's folder first)."""
        if not isinstance(raw, Mapping) or "format" not in raw:
            return super().parse(raw, path, origins)
        at = key_path(path, origins)
        if "name" in raw:
            raise fail(
                at("name"),
                "give either name (a built-in dataset) or format (your own data), not both",
                raw["name"],
            )
        for key in ("inputs", "noise"):
            if key in raw:
                raise fail(at(key), "applies to name = 'teacher' only", raw[key])
        own = {k: raw[k] for k in SOURCE_KEYS if k in raw}
        config = super().parse(own, path, origins)
        source = parse_source(raw, path, origins=origins, ignore=SOURCE_KEYS)
        config = dataclasses.replace(config, name="", source=source)
        load_source(source)  # read and checked now; trials reuse it (cached)
        return config

    @property
    def title(self) -> str:
        """How messages name the data: the built-in name, or the source's file name."""
        return self.name if self.source is None else Path(self.source.path).name

    @property
    def dataset(self) -> Dataset:
        if self.source is None:
            return DATASETS[self.name]
        loaded = load_source(self.source)
        return Dataset(loaded.features, loaded.classes, len(loaded.y_train), loaded.image_shape)

    @property
    def features(self) -> int | None:
        return self.inputs if self.name == "teacher" else self.dataset.features

    def to_dict(self) -> dict[str, Any]:
        """The table as plain data; a source's keys in place of ``name`` and the teacher's."""
        out = super().to_dict()
        if self.source is None:
            del out["source"]
            return out
        lab = {k: out[k] for k in SOURCE_KEYS}
        return {**{k: v for k, v in self.source.to_dict().items() if v is not None}, **lab}


def anchor(document: Mapping[str, Any], root: str | Path) -> dict[str, Any]:
    """``document`` (a study file, decoded) with its ``[data]`` ``path`` and ``test_path``
    made absolute against ``root``, the study file's folder, when it names a source
    (``format``): relative paths in a study are relative to the file, and the run directory
    records the absolute ones (so ``--resume`` and workers elsewhere find the same files)."""
    out = dict(document)
    data = out.get("data")
    if not isinstance(data, Mapping) or "format" not in data:
        return out
    data = dict(data)
    for key in ("path", "test_path"):
        value = data.get(key)
        if isinstance(value, str) and value:
            data[key] = str((Path(root) / Path(value).expanduser()).resolve())
    out["data"] = data
    return out


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

    Inputs are rows of shape ``(N, features)`` (images flattened as ``C·H·W``; the convnet
    kinds and a factory get ``image_shape`` to view them) and labels int64 ``(N,)``.

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
    if data.source is not None:
        loaded = load_source(data.source)  # cached: the tensors are shared, never changed
        (x, xt), y, yt = loaded.flat(), loaded.y_train, loaded.y_test
    else:
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
