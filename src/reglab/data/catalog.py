"""What ``reglab data list`` shows: every dataset reglab knows, and whether it is here."""

from __future__ import annotations

import os
from dataclasses import dataclass

from reglab.data._store import data_dir
from reglab.data.fetch import GUTENBERG_COMPLETE
from reglab.data.mnist import FASHION_MNIST, MNIST

__all__ = ["DatasetStatus", "list_datasets"]


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    available: bool
    location: str
    how_to_get: str


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def list_datasets(root: str | os.PathLike[str] | None = None) -> list[DatasetStatus]:
    """Status of each dataset in the data directory (``root``, ``$REGLAB_DATA`` or the cache)."""
    base = data_dir(root)
    rows = [DatasetStatus("digits", True, "inside scikit-learn", "bundled")]
    for spec in (MNIST, FASHION_MNIST):
        folder = base / spec.folder
        here = all((folder / f).is_file() for f in spec.files.values())
        rows.append(DatasetStatus(spec.name, here, str(folder), spec.how_to_get))
    gutenberg = base / "gutenberg"
    rows.append(
        DatasetStatus(
            "gutenberg",
            (gutenberg / GUTENBERG_COMPLETE).is_file(),
            str(gutenberg),
            "reglab data get gutenberg",
        )
    )
    rows.append(
        DatasetStatus(
            "image-patches",
            _module_available("skimage"),
            "inside scikit-image",
            "pip install 'reglab[images]'",
        )
    )
    return rows
