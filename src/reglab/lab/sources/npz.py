"""``format = "npz"``: one NumPy ``.npz`` archive with a feature and a label array."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reglab.lab.settings.schema import KeyPath, choice, integer, spec, string
from reglab.lab.sources._base import Arrays, Source, register, shape
from reglab.lab.sources._numpy import load_npz

__all__ = ["NpzSource"]


@register
@dataclass(frozen=True, kw_only=True)
class NpzSource(Source):
    """``[data] format = "npz"``: arrays ``x`` (features, ``(N, ...)``, any real dtype) and
    ``y`` (labels, ``(N,)``) of the archive at ``path``; ``test_path`` another archive with
    the same array names. Read with ``np.load(allow_pickle=False)``: object arrays are
    refused. ``x`` of shape ``(N, H, W)`` or ``(N, C, H, W)`` is a set of images (``(N, H, W)``
    gets one channel); ``image_shape = [C, H, W]`` views flat rows as images.

    >>> NpzSource.parse({"path": "digits.npz", "y": "target"}, "s.data").y
    'target'
    """

    name = "npz"

    format: str = spec("npz", choice("npz"))
    #: the feature array's name in the archive
    x: str = spec("x", string())
    #: the label array's name in the archive
    y: str = spec("y", string())
    #: labels are ``0..classes-1`` (some may be empty); default: ``0..max`` with none empty
    classes: int | None = spec(None, integer(2))
    #: view each row as a ``(C, H, W)`` image
    image_shape: tuple[int, int, int] | None = spec(None, shape(3, "[C, H, W], three ints >= 1"))

    def read(self, at: KeyPath) -> Arrays:
        x, y = load_npz(Path(self.path), (self.x, self.y), ("x", "y"), at, self.path)
        test = None
        if self.test_path is not None:
            moved = lambda key: at("test_path") if key == "path" else at(key)  # noqa: E731
            test = load_npz(
                Path(self.test_path), (self.x, self.y), ("x", "y"), moved, self.test_path
            )
        return arrays(x, y, test)


def arrays(x, y, test) -> Arrays:  # type: ignore[no-untyped-def]
    """Images when ``x`` has 3 or 4 dimensions (``(N, H, W)`` gets one channel)."""
    image = None
    if x.ndim == 3:
        x = x[:, None]
        if test is not None and test[0].ndim == 3:
            test = (test[0][:, None], test[1])
    if x.ndim == 4:
        image = tuple(int(d) for d in x.shape[1:])
    return Arrays(x=x, y=y, test=test, image_shape=image)  # type: ignore[arg-type]
