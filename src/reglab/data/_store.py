"""Where datasets live on disk, and atomic writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from reglab._io import atomic_write

__all__ = ["DatasetNotFoundError", "data_dir", "md5", "save_npy"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk; the message says how to get them."""


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$REGLAB_DATA``, else the user cache dir
    (``~/.cache/reglab`` on Linux, via platformdirs)."""
    if root is not None:
        return Path(root)
    env = os.environ.get("REGLAB_DATA")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("reglab"))


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` made atomic."""
    atomic_write(path, lambda f: np.save(f, array))
