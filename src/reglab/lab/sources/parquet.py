"""``format = "parquet"``: an Apache Parquet table, read with pyarrow (``reglab[hf]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglab.lab.settings.schema import KeyPath, choice, fail, integer, spec, string
from reglab.lab.sources._base import Arrays, Source, names, register, shape
from reglab.lab.sources._columns import label_values, pick
from reglab.lab.sources._optional import require_extra

__all__ = ["ParquetSource"]


@register
@dataclass(frozen=True, kw_only=True)
class ParquetSource(Source):
    """``[data] format = "parquet"``: the keys of ``csv`` (no ``delimiter``). Feature columns
    must have a numeric type (a column of strings is named with its first value); empty
    (null) cells are refused. Needs pyarrow, which ``pip install 'reglab[hf]'`` brings.

    >>> ParquetSource.parse({"path": "t.parquet", "label": "y"}, "s.data").label
    'y'
    """

    name = "parquet"

    format: str = spec("parquet", choice("parquet"))
    #: the label column
    label: str = spec("label", string())
    #: the feature columns (default: every column but the label)
    x: tuple[str, ...] | None = spec(None, names())
    #: integer labels are ``0..classes-1`` (some may be empty); default: ``0..max``, none empty
    classes: int | None = spec(None, integer(2))
    #: view each row as a ``(C, H, W)`` image
    image_shape: tuple[int, int, int] | None = spec(None, shape(3, "[C, H, W], three ints >= 1"))

    def read(self, at: KeyPath) -> Arrays:
        x, y = self._table(Path(self.path), at, "path", self.path)
        test = None
        if self.test_path is not None:
            test = self._table(Path(self.test_path), at, "test_path", self.test_path)
        return Arrays(x=x, y=y, test=test, label_key="label", feature_key="x")

    def _table(self, file: Path, at: KeyPath, key: str, value: Any) -> tuple:
        pq = require_extra("pyarrow.parquet", "format = 'parquet'")
        try:
            table = pq.read_table(file)
        except OSError as err:
            raise fail(at(key), f"cannot read {file.name} as Parquet: {err}", value) from None
        if table.num_rows == 0:
            raise fail(at(key), f"{file.name} has no rows", value)
        chosen = pick(table.column_names, self.label, self.x, file.name, at, value)
        columns = []
        for name in chosen:
            column = table.column(name)
            if column.null_count:
                i = next(i for i, v in enumerate(column.to_pylist()) if v is None)
                raise fail(at(key), f"row {i}, column {name!r} of {file.name} is empty", value)
            values = column.to_numpy(zero_copy_only=False)
            if values.dtype.kind not in "biuf":
                raise fail(
                    at(key),
                    f"column {name!r} of {file.name} is not numeric ({column.type}): row 0 is "
                    f"{column[0].as_py()!r}",
                    value,
                )
            columns.append(values)
        x = np.stack(columns, axis=1)  # (N, F)
        y = label_values(table.column(self.label).to_pylist(), at, value, lambda i: f"row {i}")
        return x, y
