"""``format = "csv"``: a comma-separated table with a header row."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglab.lab.settings.schema import KeyPath, choice, fail, integer, spec, string
from reglab.lab.sources._base import Arrays, Source, names, register, shape
from reglab.lab.sources._columns import label_values, pick

__all__ = ["CsvSource"]


def _line(lines: list[int]) -> Any:
    return lambda i: f"line {lines[i]}"


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


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
                header = [h.strip() for h in next(reader, [])]
                if not header:
                    raise fail(at(key), f"{file.name} is empty (no header row)", value)
                chosen = pick(header, self.label, self.x, file.name, at, value)
                index = [header.index(c) for c in chosen]
                label = header.index(self.label)
                # rows are converted as they are read: a list of cells would take ~50 bytes
                # a cell, the float32 row takes 4
                rows, labels, lines = [], [], []
                for cells in reader:
                    if not cells or all(not c.strip() for c in cells):
                        continue
                    if len(cells) != len(header):
                        raise fail(
                            at(key),
                            f"line {reader.line_num} of {file.name} has {len(cells)} cells, "
                            f"the header {len(header)}",
                            value,
                        )
                    picked = [cells[i] for i in index]
                    try:
                        rows.append(np.array(picked, dtype=np.float64).astype(np.float32))
                    except ValueError:
                        j = next(j for j, c in enumerate(picked) if not _number(c))
                        raise fail(
                            at(key),
                            f"line {reader.line_num}, column {chosen[j]!r} of {file.name} is "
                            f"not a number: {picked[j]!r}",
                            value,
                        ) from None
                    labels.append(cells[label])
                    lines.append(reader.line_num)
        except OSError as err:
            raise fail(at(key), f"cannot read {file}: {err.strerror or err}", value) from None
        except (UnicodeDecodeError, csv.Error) as err:
            raise fail(at(key), f"cannot read {file.name} as CSV text: {err}", value) from None
        if not rows:
            raise fail(at(key), f"{file.name} has no rows below its header", value)
        x = np.stack(rows)  # (N, F)
        y = label_values(labels, at, value, _line(lines))
        return x, y, lines
