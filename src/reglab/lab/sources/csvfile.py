"""``format = "csv"``: a comma-separated table with a header row."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglab.lab.schema import KeyPath, choice, fail, integer, spec, string
from reglab.lab.sources._base import Arrays, Source, names, register, shape
from reglab.lab.sources._columns import label_values, pick

__all__ = ["CsvSource"]


def _line(lines: list[int]) -> Any:
    return lambda i: f"line {lines[i]}"


@register
@dataclass(frozen=True, kw_only=True)
class CsvSource(Source):
    """``[data] format = "csv"``: a table whose first line names the columns; ``label`` is
    the label column, ``x`` the feature columns (default: all others). Every feature cell
    must be a finite number (the first that is not is named by line and column); blank lines
    are skipped. A label column of numbers holds integer labels; one with any other cell
    holds class names, numbered in sorted order.

    >>> CsvSource.parse({"path": "iris.csv", "label": "species"}, "s.data").label
    'species'
    """

    name = "csv"

    format: str = spec("csv", choice("csv"))
    #: the label column
    label: str = spec("label", string())
    #: the feature columns (default: every column but the label)
    x: tuple[str, ...] | None = spec(None, names())
    #: the cell separator
    delimiter: str = spec(",", string())
    #: integer labels are ``0..classes-1`` (some may be empty); default: ``0..max``, none empty
    classes: int | None = spec(None, integer(2))
    #: view each row as a ``(C, H, W)`` image
    image_shape: tuple[int, int, int] | None = spec(None, shape(3, "[C, H, W], three ints >= 1"))

    def read(self, at: KeyPath) -> Arrays:
        x, y, lines = self._table(Path(self.path), at, "path", self.path)
        test, test_lines = None, lines
        if self.test_path is not None:
            xt, yt, test_lines = self._table(Path(self.test_path), at, "test_path", self.test_path)
            test = (xt, yt)
        return Arrays(
            x=x,
            y=y,
            test=test,
            label_key="label",
            feature_key="x",
            row=_line(lines),
            test_row=_line(test_lines),
        )

    def _table(self, file: Path, at: KeyPath, key: str, value: Any) -> tuple:
        try:
            with file.open(newline="", encoding="utf-8-sig") as stream:
                reader = csv.reader(stream, delimiter=self.delimiter)
                header = next(reader, None)
                rows, lines = [], []
                for cells in reader:
                    if not cells or all(not c.strip() for c in cells):
                        continue
                    if header is not None and len(cells) != len(header):
                        raise fail(
                            at(key),
                            f"line {reader.line_num} of {file.name} has {len(cells)} cells, "
                            f"the header {len(header)}",
                            value,
                        )
                    rows.append(cells)
                    lines.append(reader.line_num)
        except OSError as err:
            raise fail(at(key), f"cannot read {file}: {err.strerror or err}", value) from None
        except (UnicodeDecodeError, csv.Error) as err:
            raise fail(at(key), f"cannot read {file.name} as CSV text: {err}", value) from None
        if header is None or not rows:
            raise fail(at(key), f"{file.name} has no rows below its header", value)
        header = [h.strip() for h in header]
        chosen = pick(header, self.label, self.x, file.name, at, value)
        index = [header.index(c) for c in chosen]
        cells = np.array(rows, dtype=str)[:, index]  # (N, F)
        try:
            x = cells.astype(np.float64)
        except ValueError:  # find the first cell that is not a number, row by row
            for i, row in enumerate(cells):
                for j, cell in enumerate(row):
                    try:
                        float(cell)
                    except ValueError:
                        raise fail(
                            at(key),
                            f"line {lines[i]}, column {chosen[j]!r} of {file.name} is not a "
                            f"number: {str(cell)!r}",
                            value,
                        ) from None
            raise
        label = header.index(self.label)
        y = label_values([r[label] for r in rows], at, value, _line(lines))
        return x, y, lines
