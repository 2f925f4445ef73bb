"""MNIST and Fashion-MNIST from the standard IDX files, verified, cached as ``.npy``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reglab._io import atomic_write_bytes
from reglab.data._store import DatasetNotFoundError, data_dir, md5, save_npy
from reglab.data.idx import read_idx

__all__ = ["FASHION_MNIST", "MNIST", "IdxDataset", "fashion_mnist", "load_idx_dataset", "mnist"]

Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class IdxDataset:
    """Four IDX files with their expected shapes (and MD5 sums where they are canonical)."""

    name: str
    folder: str
    files: dict[str, str]  # role -> file name
    shapes: dict[str, tuple[int, ...]]
    md5: dict[str, str] | None
    how_to_get: str


MNIST = IdxDataset(
    name="mnist",
    folder="mnist",
    files={
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    },
    shapes={
        "train_images": (60000, 28, 28),
        "train_labels": (60000,),
        "test_images": (10000, 28, 28),
        "test_labels": (10000,),
    },
    # The canonical sums of the files published by LeCun, Cortes and Burges.
    md5={
        "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
        "test_images": "9fb629c4189551a2d022fa330f9573f3",
        "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    how_to_get="reglab data get mnist",
)

FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    folder="fashion-mnist",
    files=dict(MNIST.files),
    shapes=dict(MNIST.shapes),
    md5=None,  # Debian's package recompresses the files: counts and shapes are verified
    how_to_get="apt-get install dataset-fashion-mnist; reglab data get fashion-mnist",
)


#: Beside the cached arrays: for each role, the MD5 of the source file the cache was decoded
#: from and the MD5 of the cache itself. A cache is used only when both still match.
MANIFEST = "cache.json"


def _check_source(spec: IdxDataset, path: Path, role: str, source_md5: str) -> None:
    if spec.md5 is not None and source_md5 != spec.md5[role]:
        raise ValueError(
            f"{path} does not have the canonical MD5 {spec.md5[role]}: the file is corrupt or "
            f"not the original. Delete it and run: {spec.how_to_get}"
        )


def _decode(spec: IdxDataset, folder: Path, role: str) -> np.ndarray:
    path = folder / spec.files[role]
    array = read_idx(path)
    if array.shape != spec.shapes[role] or array.dtype != np.uint8:
        raise ValueError(
            f"{path} holds {array.dtype} {array.shape}, expected uint8 {spec.shapes[role]}."
        )
    if role.endswith("labels") and array.max() > 9:
        raise ValueError(f"{path} has labels above 9.")
    return array


def load_idx_dataset(
    spec: IdxDataset,
    root: str | os.PathLike[str] | None = None,
    *,
    as_float: bool = True,
    flatten: bool = True,
    report: Callable[[str], None] | None = None,
) -> Split:
    """Load, verify and cache one IDX dataset (see ``mnist``).

    Every load checks each source file's MD5 (against the canonical sum where there is one)
    and each cached ``.npy`` against the sums recorded when it was written (``cache.json``);
    a cache that does not match its source (edited, truncated, or from other files) is decoded
    again from the verified source, and ``report`` (if given) is told so."""
    folder = data_dir(root) / spec.folder
    missing = [name for name in spec.files.values() if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{spec.name} is not in {folder} (missing {', '.join(missing)}). Get it with: "
            f"{spec.how_to_get} — or pass root= / set $REGLAB_DATA to a folder holding the "
            "four IDX .gz files."
        )
    arrays = {role: _cached(spec, folder, role, report) for role in spec.files}

    def images(array: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(array)
        if flatten:
            x = x.reshape(len(x), -1)
        return x.float().div_(255.0) if as_float else x

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.astype(np.int64))

    return (images(arrays["train_images"]), labels(arrays["train_labels"])), (
        images(arrays["test_images"]),
        labels(arrays["test_labels"]),
    )


def _cached(
    spec: IdxDataset, folder: Path, role: str, report: Callable[[str], None] | None
) -> np.ndarray:
    """One role's array: the cache if it provably came from the (verified) source file."""
    source = folder / spec.files[role]
    cache = folder / f"{role}.npy"
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    manifest = manifest if isinstance(manifest, dict) else {}
    source_md5 = md5(source)
    _check_source(spec, source, role, source_md5)
    entry = manifest.get(role)
    if (
        cache.is_file()
        and isinstance(entry, dict)
        and entry.get("source") == source_md5
        and entry.get("cache") == md5(cache)
    ):
        return np.load(cache, allow_pickle=False)
    if cache.is_file() and report is not None:
        report(f"{cache.name} does not match {source.name}: decoding it again")
    array = _decode(spec, folder, role)
    save_npy(cache, array)
    manifest[role] = {"source": source_md5, "cache": md5(cache)}
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())
    return array


def mnist(
    root: str | os.PathLike[str] | None = None, *, as_float: bool = True, flatten: bool = True
) -> Split:
    """MNIST's published split: 60,000 training and 10,000 test digits.

    Reads the four original IDX ``.gz`` files from ``root/mnist/``, ``$REGLAB_DATA/mnist/`` or
    the user cache dir, checks their canonical MD5 sums, shapes and labels, and caches the
    decoded arrays as ``.npy`` beside them (each load checks a cache against the sums recorded
    with it, and decodes again from the verified files when it does not match). Never touches
    the network: when the files are missing, ``DatasetNotFoundError`` says to run
    ``reglab data get mnist``.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: ``x`` float32 in [0, 1] (``as_float``) or
        uint8, shape ``(N, 784)`` (``flatten``) or ``(N, 28, 28)``; ``y`` int64 in 0..9.
    """
    return load_idx_dataset(MNIST, root, as_float=as_float, flatten=flatten)


def fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, as_float: bool = True, flatten: bool = True
) -> Split:
    """Fashion-MNIST (Xiao et al. 2017), same layout and return value as ``mnist``.

    Files are looked for in ``root/fashion-mnist/`` (etc.); ``reglab data get fashion-mnist``
    copies them from Debian's ``dataset-fashion-mnist`` package. Counts, shapes and labels are
    verified (Debian recompressed the files, so the upstream MD5 sums do not apply).
    """
    return load_idx_dataset(FASHION_MNIST, root, as_float=as_float, flatten=flatten)
