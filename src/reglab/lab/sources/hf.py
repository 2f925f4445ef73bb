"""``format = "hf"``: a Hugging Face ``datasets`` dataset saved with ``save_to_disk``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglab.lab.settings.schema import KeyPath, choice, fail, integer, spec, string
from reglab.lab.sources._base import Arrays, Source, names, register, shape
from reglab.lab.sources._columns import label_values, pick
from reglab.lab.sources._optional import require_extra
from reglab.lab.sources.images import GRAY, to_array

__all__ = ["HFSource"]


@register
@dataclass(frozen=True, kw_only=True)
class HFSource(Source):
    """``[data] format = "hf"``: the folder ``path`` written by ``Dataset.save_to_disk`` or
    ``DatasetDict.save_to_disk``, read with ``datasets.load_from_disk`` (memory-mapped, never
    downloaded). A ``DatasetDict`` gives its ``split`` (default ``"train"``) and, without
    ``test_path``, its ``test_split`` (default ``"test"`` when there is one; otherwise a
    stratified split).

    ``label`` names the label column: a ``ClassLabel`` (its names are the classes), integers,
    or strings (class names, numbered in sorted order). ``x`` names the feature column(s)
    (default: all others): numbers, fixed-length lists or arrays of numbers, or one ``Image``
    column (converted like ``format = "images"``: ``(C, H, W)`` in [0, 1], the most common
    size, grayscale unless some image has colour).

    >>> HFSource.parse({"path": "saved", "x": "pixels"}, "s.data").x
    ('pixels',)
    """

    name = "hf"
    kind = "folder"

    format: str = spec("hf", choice("hf"))
    #: the label column
    label: str = spec("label", string())
    #: the feature column(s) (default: every column but the label)
    x: tuple[str, ...] | None = spec(None, names())
    #: the training split of a ``DatasetDict``
    split: str = spec("train", string())
    #: the test split of a ``DatasetDict`` (default: ``"test"`` when present)
    test_split: str | None = spec(None, string())
    #: integer labels are ``0..classes-1`` (some may be empty); default: ``0..max``, none empty
    classes: int | None = spec(None, integer(2))
    #: view each row as a ``(C, H, W)`` image
    image_shape: tuple[int, int, int] | None = spec(None, shape(3, "[C, H, W], three ints >= 1"))

    def read(self, at: KeyPath) -> Arrays:
        datasets = require_extra("datasets", "format = 'hf'")
        saved = _load(datasets, Path(self.path), at, "path", self.path)
        test = None
        if isinstance(saved, datasets.DatasetDict):
            train = _split(saved, self.split, at("split"))
            wanted = self.test_split or ("test" if "test" in saved else None)
            if self.test_path is None and wanted is not None:
                test = _split(saved, wanted, at("test_split"))
        else:
            train = saved
        if self.test_path is not None:
            other = _load(datasets, Path(self.test_path), at, "test_path", self.test_path)
            if isinstance(other, datasets.DatasetDict):
                other = _split(other, self.test_split or "test", at("test_split"))
            test = other
        x, y, names_, image = self._columns(datasets, train, at)
        if test is not None:
            xt, yt, _, _ = self._columns(datasets, test, at, image)
            test = (xt, yt)
        return Arrays(
            x=x, y=y, test=test, names=names_, image_shape=image, label_key="label", feature_key="x"
        )

    def _columns(self, datasets: Any, ds: Any, at: KeyPath, image: Any = None) -> tuple:
        file = Path(self.path).name
        chosen = pick(list(ds.column_names), self.label, self.x, file, at, self.path)
        features = ds.features
        pictures = [c for c in chosen if isinstance(features[c], datasets.Image)]
        if pictures and len(chosen) > 1:
            raise fail(at("x"), "an Image column must be the only feature column", list(chosen))
        if len(ds) == 0:
            raise fail(at("path"), "the dataset has no rows", self.path)
        if pictures:
            x, image = _pictures(ds[pictures[0]], image)
        else:
            table = ds.select_columns(chosen).with_format("numpy")[:]
            columns = []
            for c in chosen:
                values = np.asarray(table[c])
                if values.dtype == object:
                    try:
                        values = np.stack(list(values))
                    except ValueError:
                        raise fail(
                            at("x"), f"rows of column {c!r} have different lengths", c
                        ) from None
                if values.dtype.kind not in "biuf":
                    raise fail(at("x"), f"column {c!r} is not numeric ({features[c]})", c)
                columns.append(values.reshape(len(values), -1))
            x = np.concatenate(columns, axis=1)  # (N, F)
        label = features[self.label]
        if isinstance(label, datasets.ClassLabel):
            y = np.asarray(ds[self.label], dtype=np.int64)
            return x, y, tuple(label.names), image
        y = label_values(list(ds[self.label]), at, self.path, lambda i: f"row {i}")
        return x, y, None, image


def _load(datasets: Any, folder: Path, at: KeyPath, key: str, value: Any) -> Any:
    try:
        return datasets.load_from_disk(str(folder))
    except FileNotFoundError as err:
        raise fail(at(key), f"not a folder written by save_to_disk: {err}", value) from None
    except (OSError, ValueError) as err:
        raise fail(at(key), f"cannot read the saved dataset: {err}", value) from None


def _split(saved: Any, name: str, where: str) -> Any:
    if name not in saved:
        raise fail(where, f"no such split; the dataset has {', '.join(saved)}", name)
    return saved[name]


def _pictures(images: Any, image: tuple[int, int, int] | None) -> tuple[np.ndarray, tuple]:
    """Image cells as ``(N, C, H, W)`` float32 in [0, 1] (``image``: the training shape)."""
    images = list(images)
    if image is None:
        size = Counter((i.height, i.width) for i in images).most_common(1)[0][0]
        image = (1 if all(i.mode in GRAY for i in images) else 3, *size)
    x = np.stack([to_array(i, image[1:], image[0]) for i in images]).astype(np.float32) / 255.0
    return x, image
