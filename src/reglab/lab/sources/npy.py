"""``format = "npy"``: a folder of NumPy ``.npy`` files, one per array."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reglab.lab.settings.schema import KeyPath, choice, integer, spec, string
from reglab.lab.sources._base import Arrays, Source, register, shape
from reglab.lab.sources._numpy import load_npy
from reglab.lab.sources.npz import arrays

__all__ = ["NpySource"]


@register
@dataclass(frozen=True, kw_only=True)
class NpySource(Source):
    """``[data] format = "npy"``: the folder ``path`` holds ``{x}.npy`` (features) and
    ``{y}.npy`` (labels) — an ``.npz`` archive unpacked; ``test_path`` another such folder.
    Everything else as for ``npz``.

    >>> NpySource.parse({"path": "arrays", "x": "features"}, "s.data").x
    'features'
    """

    name = "npy"
    kind = "folder"

    format: str = spec("npy", choice("npy"))
    #: the feature file is ``{x}.npy``
    x: str = spec("x", string())
    #: the label file is ``{y}.npy``
    y: str = spec("y", string())
    #: labels are ``0..classes-1`` (some may be empty); default: ``0..max`` with none empty
    classes: int | None = spec(None, integer(2))
    #: view each row as a ``(C, H, W)`` image
    image_shape: tuple[int, int, int] | None = spec(None, shape(3, "[C, H, W], three ints >= 1"))

    def read(self, at: KeyPath) -> Arrays:
        def pair(folder: str) -> tuple:
            return tuple(
                load_npy(Path(folder) / f"{name}.npy", at(key), name)
                for name, key in ((self.x, "x"), (self.y, "y"))
            )

        x, y = pair(self.path)
        return arrays(x, y, None if self.test_path is None else pair(self.test_path))
