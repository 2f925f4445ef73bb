"""Console tables that never cut a number.

Rich shrinks a table that is wider than the console by cutting cells (``79.9±1…``). Here
every number column is exactly as wide as its widest cell (header included), the
configuration names wrap instead, and columns that would not fit are left out of the console
view (named in the caption; ``summary.md`` and ``report.html`` hold every column). Without a
terminal, rich assumes 80 columns unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from reglab.lab.metrics import Metric, format_value, pick

__all__ = ["MAX_COLUMNS", "console_cells", "fit_columns", "results_table"]

#: The most metric columns the console shows.
MAX_COLUMNS = 7
#: The narrowest the configuration column gets (its names wrap below their length).
NAME_WIDTH = 12
#: Width rich adds to one column of a ``box.SIMPLE_HEAD`` table: padding and divider.
_PAD = 3
#: Width of the table's two edges.
_EDGES = 2


def console_cells(summary: Sequence[dict[str, Any]], m: Metric) -> list[str]:
    """One column's cells: ``mean±std`` for spread metrics, the mean otherwise, never cut."""
    cells = []
    for row in summary:
        mean, std = row["metrics"].get(m.key, (math.nan, 0.0))
        cells.append(format_value(m, mean, std if m.spread else None).replace(" ± ", "±"))
    return cells


def fit_columns(
    summary: Sequence[dict[str, Any]],
    width: int,
    limit: int = MAX_COLUMNS,
    first: Sequence[str] = (),
) -> tuple[list[Metric], list[Metric]]:
    """``(shown, left_out)``: the registry's console columns (in its order) that fit ``width``
    characters with every number whole and the names at least :data:`NAME_WIDTH` wide; the
    metrics named in ``first`` (e.g. the study's objective and its test metric) are given
    room before the others."""
    recorded = {k for row in summary for k in row["metrics"]}
    candidates = pick(recorded, "console", limit)
    extra = [m for m in pick(recorded, "table") if m.key in first and m not in candidates]
    candidates = sorted([*candidates, *extra], key=lambda m: (m.console is None, m.console))
    names = max((len(row["label"]) for row in summary), default=0)
    used = _EDGES + min(max(names, len("config")), NAME_WIDTH) + _PAD
    kept: set[str] = set()
    for m in sorted(candidates, key=lambda m: m.key not in first):  # stable: first ones first
        need = max(len(m.header), *(len(c) for c in console_cells(summary, m))) + _PAD
        if used + need <= width:
            kept.add(m.key)
            used += need
    return [m for m in candidates if m.key in kept], [m for m in candidates if m.key not in kept]


def results_table(
    summary: Sequence[dict[str, Any]], title: str, width: int = 80, first: Sequence[str] = ()
) -> Table:
    """The console's results table for a console ``width`` characters wide (see the
    module; ``first`` as for :func:`fit_columns`); notes (divergence, non-finite values)
    wrap in a last column."""
    notes = any(row["notes"] for row in summary)
    shown, left_out = fit_columns(summary, width - (12 + _PAD if notes else 0), first=first)
    caption = None
    if left_out:
        caption = f"not shown here (too wide): {', '.join(m.header for m in left_out)}"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("config", overflow="fold", min_width=min(NAME_WIDTH, len("config")))
    cells = [console_cells(summary, m) for m in shown]
    for m, column in zip(shown, cells, strict=True):
        wide = max(len(m.header), *(len(c) for c in column))
        table.add_column(escape(m.header), justify="right", no_wrap=True, min_width=wide)
    if notes:
        table.add_column("notes", overflow="fold", min_width=12)
    for i, row in enumerate(summary):
        table.add_row(
            escape(row["label"]),
            *(column[i] for column in cells),
            *([escape(row["notes"])] if notes else []),
        )
    return table
