"""Tables of named columns (CSV, Parquet, a Hugging Face dataset): which column is the label,
which are the features."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reglab.lab.settings.schema import KeyPath, fail

__all__ = ["label_values", "pick"]


def pick(
    columns: list[str], label: str, x: tuple[str, ...] | None, file: str, at: KeyPath, value: Any
) -> list[str]:
    """The feature columns: ``x`` when given (each must exist and not be the label), else
    every column but the label. The label column must exist."""
    listing = ", ".join(columns)
    if label not in columns:
        raise fail(at("label"), f"{file} has no column {label!r}; it has {listing}", label)
    if x is None:
        chosen = [c for c in columns if c != label]
        if not chosen:
            raise fail(at("path"), f"{file} has no feature columns besides {label!r}", value)
        return chosen
    for name in x:
        if name == label:
            raise fail(at("x"), f"the label column {label!r} cannot be a feature", list(x))
        if name not in columns:
            raise fail(at("x"), f"{file} has no column {name!r}; it has {listing}", list(x))
    return list(x)


def label_values(
    cells: list[Any], at: KeyPath, value: Any, row: Callable[[int], str]
) -> np.ndarray:
    """A label column as numbers when every cell is one, else as class names (strings).
    Empty cells are refused."""
    for i, cell in enumerate(cells):
        if cell is None or (isinstance(cell, str) and not cell.strip()):
            raise fail(at("label"), f"{row(i)} has no label", value)
    if all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in cells):
        return np.asarray(cells)
    texts = [str(c).strip() for c in cells]
    try:
        return np.array(texts).astype(np.float64)
    except ValueError:
        return np.array(texts)
