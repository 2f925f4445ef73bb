"""What every data format shares: its parsed table, the reader's output, and the checks.

A format is a frozen :class:`Source` table (one subclass per format, registered in
:data:`FORMATS`) with one method, :meth:`Source.read`, which returns the raw arrays of the
file(s) as :class:`Arrays`. Everything after reading is common and lives here: feature and
label checks, the class space, the seeded stratified test split, and the typed result
:class:`SourceData`. Every error is a :class:`~reglab.lab.settings.schema.StudyError` whose message
starts with the key path of the ``[data]`` key it is about.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from reglab._optional import require
from reglab.lab.settings.schema import KeyPath, Table, fail, integer, number, spec, string

__all__ = ["FORMATS", "Arrays", "Source", "SourceData", "register"]

#: format name -> its :class:`Source` subclass (filled by :func:`register`)
FORMATS: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Class decorator: make ``cls`` the table of ``format = cls.name``."""
    if cls.name in FORMATS:
        raise RuntimeError(f"data format {cls.name!r} registered twice")
    FORMATS[cls.name] = cls
    return cls


def names() -> Any:
    """A column name or a list of them; returned as a tuple."""

    def check(path: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, str) for v in value)
            and len(set(value)) == len(value)
        ):
            return tuple(value)
        raise fail(path, "expected a column name or a list of distinct names", value)

    return check


def shape(length: int, what: str) -> Any:
    """A list of ``length`` ints >= 1 (``image_shape``, ``size``); returned as a tuple."""

    def check(path: str, value: Any) -> tuple[int, ...]:
        if (
            not isinstance(value, (list, tuple))
            or len(value) != length
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        ):
            raise fail(path, f"expected {what}", value)
        return tuple(value)

    return check


@dataclass(frozen=True)
class Arrays:
    """What a reader returns: features ``x`` of shape ``(N, ...)`` (any real dtype), labels
    ``y`` of shape ``(N,)`` (ints, integral floats or strings), each for the training file and
    optionally the test file. ``names`` fixes the class space when the source defines it
    (class folders, a ``ClassLabel`` column); ``row`` turns an index into the words an error
    uses (``row 5``, ``line 7``); ``label_key`` is the key a label error names."""

    x: np.ndarray
    y: np.ndarray
    test: tuple[np.ndarray, np.ndarray] | None = None
    names: tuple[str, ...] | None = None
    image_shape: tuple[int, int, int] | None = None
    label_key: str = "y"
    feature_key: str = "x"
    row: Callable[[int], str] = lambda i: f"row {i}"
    test_row: Callable[[int], str] = lambda i: f"row {i}"

    def rows(self, where: str) -> Callable[[int], str]:
        """How an error names a row of the training (``where = ""``) or the test data."""
        return self.test_row if where else self.row


@dataclass(frozen=True)
class SourceData:
    """A source as the lab sees it.

    ``x_*`` are float32 of shape ``(N, features)``, or ``(N, C, H, W)`` when
    ``image_shape = (C, H, W)`` is set; ``y_*`` are int64 labels in ``0..classes-1`` of shape
    ``(N,)``. ``class_names[k]`` names label ``k`` and ``train_counts[k]`` / ``test_counts[k]``
    count its rows. ``split`` says where the test rows came from.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    features: int
    classes: int
    image_shape: tuple[int, int, int] | None
    class_names: tuple[str, ...]
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    split: str

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_train, x_test)`` as rows of shape ``(N, features)`` (views, no copy)."""
        return self.x_train.flatten(1), self.x_test.flatten(1)


@dataclass(frozen=True, kw_only=True)
class Source(Table):
    """The keys every format shares. ``path`` and ``test_path`` are relative to the study
    file's folder until :func:`~reglab.lab.sources.parse_source` resolves them."""

    #: the format's name in ``[data] format = ...``
    name: ClassVar[str] = ""
    #: ``"file"`` or ``"folder"``: what ``path`` and ``test_path`` must be
    kind: ClassVar[str] = "file"

    format: str = spec("")
    path: str = spec(check=string())
    #: a separate test set; without it, a seeded stratified split of ``path``
    test_path: str | None = spec(None, string())
    #: fraction of the rows in the stratified test split (without ``test_path``)
    test_size: float = spec(0.25, number(above=0.0, below=1.0))
    #: the split's seed (the same test rows for every trial)
    split_seed: int = spec(0, integer(0))

    def read(self, at: KeyPath) -> Arrays:  # pragma: no cover - every format overrides it
        raise NotImplementedError

    def files(self) -> list[Path]:
        """Every file the source reads (for the loader's cache key)."""
        found = []
        for p in (self.path, self.test_path):
            if p is None:
                continue
            root = Path(p)
            found += sorted(root.rglob("*")) if root.is_dir() else [root]
        return found


# -- the common checks after reading ---------------------------------------------------------
def features(x: np.ndarray, arrays: Arrays, at: KeyPath, value: Any, where: str) -> np.ndarray:
    """``x`` as float32 with finite values, or a :func:`fail` naming the first bad value."""
    if x.dtype.kind not in "biuf":
        raise fail(at(arrays.feature_key), f"features{where} must be numbers, not {x.dtype}", value)
    if x.ndim < 2 or x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
        raise fail(
            at(arrays.feature_key),
            f"features{where} must have shape (rows, features...) with at least one of each; "
            f"shape is {x.shape}",
            value,
        )
    x = x.astype(np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise fail(
            at(arrays.feature_key),
            f"features{where} must be finite: {arrays.rows(where)(int(i))}, feature {int(j)} is "
            f"{x.reshape(len(x), -1)[i, j]}",
            value,
        )
    return x


def integral(y: np.ndarray, arrays: Arrays, at: KeyPath, value: Any, where: str) -> np.ndarray:
    """Numeric labels as int64, or a :func:`fail` naming the first one that is not an int."""
    if y.dtype.kind == "f":
        bad = ~(np.isfinite(y) & (y == np.round(y)))
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(
                at(arrays.label_key),
                f"labels{where} must be integers; {arrays.rows(where)(i)} has {y[i].item()!r}",
                value,
            )
    elif y.dtype.kind not in "biu":
        raise fail(at(arrays.label_key), f"labels{where} must be integers, not {y.dtype}", value)
    return y.astype(np.int64)


def encode(
    arrays: Arrays, classes: int | None, at: KeyPath, value: Any
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Labels as int64 in ``0..C-1`` and the class names.

    Strings are class names, numbered in sorted order (scikit-learn's ``LabelEncoder``).
    Integers are the labels themselves: ``0..classes-1`` when ``classes`` is set, else
    ``0..max`` with every class present in the training rows."""
    y, test = arrays.y, None if arrays.test is None else arrays.test[1]
    label = at(arrays.label_key)
    if y.dtype.kind in "USO":
        names = tuple(sorted({str(v) for v in y}))
        if classes is not None and classes != len(names):
            raise fail(at("classes"), f"the labels name {len(names)} classes", classes)
        index = {n: k for k, n in enumerate(names)}
        encoded = np.array([index[str(v)] for v in y], dtype=np.int64)
        if test is None:
            return encoded, None, names
        unknown = [str(v) for v in test if str(v) not in index]
        if unknown:
            raise fail(label, f"test label {unknown[0]!r} is not a training label", value)
        return encoded, np.array([index[str(v)] for v in test], dtype=np.int64), names
    encoded = integral(y, arrays, at, value, "")
    test_encoded = None if test is None else integral(test, arrays, at, value, " in test_path")
    if arrays.names is not None:  # the source names the classes (folders, a ClassLabel)
        classes = len(arrays.names)
    top = classes if classes is not None else int(encoded.max()) + 1
    allowed = f"0..{top - 1}" + (f" (classes = {classes})" if classes is not None else "")
    for where, ys in (("", encoded), (" in test_path", test_encoded)):
        if ys is None:
            continue
        bad = (ys < 0) | (ys >= top)
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(
                label,
                f"labels{where} must be integers in {allowed}; {arrays.rows(where)(i)} has {ys[i]}",
                value,
            )
    if classes is None:
        missing = sorted(set(range(top)) - set(encoded.tolist()))
        if missing:
            raise fail(
                label,
                f"labels must be 0..C-1 with every class in the training rows; class "
                f"{missing[0]} has none (set classes = N to allow empty classes)",
                value,
            )
    if top < 2:
        raise fail(label, "a classification set needs at least 2 classes", value)
    return encoded, test_encoded, arrays.names or tuple(str(k) for k in range(top))


def stratified_split(
    x: np.ndarray, y: np.ndarray, source: Source, at: KeyPath, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ``train_test_split(stratify=y)`` after checking that it can work:
    at least 2 rows of every class present, and at least one row per class on each side."""
    counts = np.bincount(y, minlength=classes)
    present = counts[counts > 0]
    if (counts == 1).any():
        k = int(np.argmax(counts == 1))
        raise fail(
            at("path"),
            f"class {k} has 1 row; a stratified test split needs at least 2 of every class "
            f"(or give test_path)",
            source.path,
        )
    n = len(y)
    n_test = math.ceil(source.test_size * n)
    for side, size in (("test", n_test), ("training", n - n_test)):
        if size < len(present):
            raise fail(
                at("test_size"),
                f"{source.test_size:g} of {n} rows leaves {size} {side} rows, fewer than the "
                f"{len(present)} classes",
                source.test_size,
            )
    selection = require("sklearn.model_selection", "the stratified test split")
    x_tr, x_te, y_tr, y_te = selection.train_test_split(
        x, y, test_size=source.test_size, random_state=source.split_seed, stratify=y
    )
    return x_tr, y_tr, x_te, y_te


def finish(source: Source, arrays: Arrays, at: KeyPath) -> SourceData:
    """Check the arrays a reader returned and make the :class:`SourceData`."""
    value = source.path
    image_shape = getattr(source, "image_shape", None)
    x = features(arrays.x, arrays, at, value, "")
    test_x = None
    if arrays.test is not None:
        test_x = features(arrays.test[0], arrays, at, value, " in test_path")
        if test_x.shape[1:] != x.shape[1:]:
            raise fail(
                at("test_path"),
                f"test features have shape {test_x.shape[1:]} per row, training features "
                f"{x.shape[1:]}",
                source.test_path,
            )
    arrays = dataclasses.replace(
        arrays,
        y=per_row(arrays.y, len(x), arrays, at, value, ""),
        test=None
        if test_x is None
        else (test_x, per_row(arrays.test[1], len(test_x), arrays, at, value, " in test_path")),  # type: ignore[index]
    )
    y, test_y, names = encode(arrays, getattr(source, "classes", None), at, value)
    classes = len(names)
    if test_x is None:
        x, y, test_x, test_y = stratified_split(x, y, source, at, classes)
        split = f"stratified, test_size {source.test_size:g}, split_seed {source.split_seed}"
    else:
        split = "test_path"
    n_features = math.prod(x.shape[1:])
    shape_ = arrays.image_shape
    if image_shape is not None:
        if math.prod(image_shape) != n_features:
            raise fail(
                at("image_shape"), f"must multiply to the {n_features} features", list(image_shape)
            )
        shape_ = tuple(image_shape)
    if shape_ is not None:
        x, test_x = x.reshape(len(x), *shape_), test_x.reshape(len(test_x), *shape_)
    else:
        x, test_x = x.reshape(len(x), -1), test_x.reshape(len(test_x), -1)
    assert test_y is not None
    return SourceData(
        x_train=torch.from_numpy(np.ascontiguousarray(x)),
        y_train=torch.from_numpy(np.ascontiguousarray(y)),
        x_test=torch.from_numpy(np.ascontiguousarray(test_x)),
        y_test=torch.from_numpy(np.ascontiguousarray(test_y)),
        features=n_features,
        classes=classes,
        image_shape=shape_,  # type: ignore[arg-type]
        class_names=names,
        train_counts=tuple(np.bincount(y, minlength=classes).tolist()),
        test_counts=tuple(np.bincount(test_y, minlength=classes).tolist()),
        split=split,
    )


def per_row(ys: np.ndarray, n: int, arrays: Arrays, at: KeyPath, value: Any, where: str) -> Any:
    """Labels of shape ``(n,)`` (``(n, 1)`` is flattened), or a :func:`fail`."""
    if ys.ndim == 2 and ys.shape[1] == 1:
        ys = ys[:, 0]
    if ys.ndim != 1 or len(ys) != n:
        raise fail(
            at(arrays.label_key),
            f"labels{where} must be one per row: {n} rows of features, labels of shape {ys.shape}",
            value,
        )
    return ys
