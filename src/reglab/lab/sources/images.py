"""``format = "images"``: a folder per class of image files, read with Pillow."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglab._optional import require
from reglab.lab.settings.schema import KeyPath, choice, fail, spec
from reglab.lab.sources._base import Arrays, Source, register, shape

__all__ = ["EXTENSIONS", "ImageSource", "to_array"]

#: the file name endings read as images (any case); other files are ignored
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
#: Pillow modes without colour: these images give one channel unless ``channels = 3``
GRAY = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def to_array(image: Any, size: tuple[int, int], channels: int) -> np.ndarray:
    """One Pillow image as a ``(C, H, W)`` uint8 array: converted to ``L`` (C = 1) or ``RGB``
    (C = 3; alpha dropped), then resized to ``size = (H, W)`` with bilinear interpolation
    (aspect ratio not kept) when its size differs."""
    pil = require("PIL.Image", "format = 'images'")
    image = image.convert("L" if channels == 1 else "RGB")
    if (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), pil.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


@register
@dataclass(frozen=True, kw_only=True)
class ImageSource(Source):
    """``[data] format = "images"``: ``path`` is a folder with one sub-folder per class (the
    folder names, sorted, are the classes ``0..C-1``), each holding that class's image files
    (``.png``, ``.jpg``, ... — see ``EXTENSIONS``; other and hidden files are ignored, and
    sub-folders of class folders are not read). ``test_path`` is another such folder whose
    class folders must be among the training ones.

    Every image becomes a ``(C, H, W)`` float32 tensor in ``[0, 1]`` (8-bit values / 255):
    ``size = [H, W]`` (default: the most common size of the training images, the first in
    file order on a tie), ``channels`` 1 (grayscale) or 3 (RGB; default 1 when every training
    image is grayscale, else 3). Images of another size are resized bilinearly.

    >>> ImageSource.parse({"path": "pets", "size": [32, 32]}, "s.data").size
    (32, 32)
    """

    name = "images"
    kind = "folder"

    format: str = spec("images", choice("images"))
    #: ``[H, W]`` of every image (default: the most common training image size)
    size: tuple[int, int] | None = spec(None, shape(2, "[H, W], two ints >= 1"))
    #: 1 (grayscale) or 3 (RGB); default 1 when every training image is grayscale
    channels: int | None = spec(None, lambda path, value: _channels(path, value))

    def read(self, at: KeyPath) -> Arrays:
        train = _listing(Path(self.path), at, "path", self.path)
        names = tuple(name for name, _ in train)
        headers = [_header(f, at, "path", self.path) for _, files in train for f in files]
        size = self.size or Counter(h for h, _ in headers).most_common(1)[0][0]
        channels = self.channels or (1 if all(m in GRAY for _, m in headers) else 3)
        x, y = _read(train, names, size, channels, at, "path", self.path)
        test = None
        if self.test_path is not None:
            listing = _listing(Path(self.test_path), at, "test_path", self.test_path)
            unknown = [name for name, _ in listing if name not in names]
            if unknown:
                raise fail(
                    at("test_path"),
                    f"class folder {unknown[0]!r} is not a training class ({', '.join(names)})",
                    self.test_path,
                )
            test = _read(listing, names, size, channels, at, "test_path", self.test_path)
        return Arrays(x=x, y=y, test=test, names=names, image_shape=(channels, *size))


def _channels(path: str, value: Any) -> int:
    if isinstance(value, bool) or value not in (1, 3):
        raise fail(path, "expected 1 or 3", value)
    return int(value)


def _listing(root: Path, at: KeyPath, key: str, value: Any) -> list[tuple[str, list[Path]]]:
    """``[(class name, [image files])]``, sorted by class name and file name."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if p.is_file() and p.suffix.lower() in EXTENSIONS]
    if stray:
        raise fail(
            at(key), f"{stray[0].name} is not in a class folder (one folder per class)", value
        )
    folders = [p for p in entries if p.is_dir()]
    if not folders:
        raise fail(at(key), f"{root} has no class folders (one folder of images per class)", value)
    listing = []
    for folder in folders:
        files = sorted(
            f
            for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in EXTENSIONS
        )
        if not files:
            raise fail(at(key), f"class folder {folder.name!r} has no images", value)
        listing.append((folder.name, files))
    if key == "path" and len(listing) < 2:
        raise fail(at(key), f"{root} has 1 class folder; a classification set needs 2", value)
    return listing


def _header(file: Path, at: KeyPath, key: str, value: Any) -> tuple[tuple[int, int], str]:
    """``((H, W), mode)`` of one image, read from its header."""
    pil = require("PIL.Image", "format = 'images'")
    try:
        with pil.open(file) as image:
            return (image.height, image.width), image.mode
    except (OSError, pil.DecompressionBombError) as err:
        raise _unreadable(file, err, at, key, value) from None


def _read(
    listing: list[tuple[str, list[Path]]],
    names: tuple[str, ...],
    size: tuple[int, int],
    channels: int,
    at: KeyPath,
    key: str,
    value: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Every image as ``(N, C, H, W)`` float32 in [0, 1] and its class index ``(N,)``."""
    pil = require("PIL.Image", "format = 'images'")
    arrays, labels = [], []
    for name, files in listing:
        for file in files:
            try:
                with pil.open(file) as image:
                    arrays.append(to_array(image, size, channels))
            except (OSError, pil.DecompressionBombError) as err:
                raise _unreadable(file, err, at, key, value) from None
            labels.append(names.index(name))
    x = np.stack(arrays).astype(np.float32) / 255.0  # (N, C, H, W)
    return x, np.array(labels, dtype=np.int64)


def _unreadable(file: Path, err: Exception, at: KeyPath, key: str, value: Any) -> Exception:
    where = f"{file.parent.name}/{file.name}"
    return fail(at(key), f"cannot read image {where}: {err}", value)
