"""The report's text: ``summary.md`` and a self-contained ``report.html`` (figures embedded),
from summary rows and rendered figures."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from reglab.lab.metrics import Metric
from reglab.lab.report.summaries import STOPPING_HEADERS, markdown_table, table_rows

__all__ = ["html_page", "markdown_page"]

Figure = tuple[str, str, bytes]  # (file name, caption, PNG bytes)


def markdown_page(
    title: str,
    description: str,
    status: str,
    summary: Sequence[dict[str, Any]],
    columns: Sequence[Metric],
    stopping: Sequence[Sequence[str]],
    figures: Sequence[Figure],
    notes: Sequence[str] = (),
) -> str:
    parts = [f"# {title}", description.strip(), status, markdown_table(summary, columns)]
    if stopping:
        parts.append(
            "Early-stopping criteria replayed on the logged runs:\n\n"
            + f"| {' | '.join(STOPPING_HEADERS)} |\n|"
            + "---|" * len(STOPPING_HEADERS)
            + "".join(f"\n| {' | '.join(cells)} |" for cells in stopping)
        )
    parts += [f"![{caption}]({name})" for name, caption, _ in figures]
    parts += [f"Note: {note}" for note in notes]
    return "\n\n".join(parts) + "\n"


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child{text-align:left}img{max-width:100%}"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(
    title: str,
    description: str,
    status: str,
    summary: Sequence[dict[str, Any]],
    columns: Sequence[Metric],
    stopping: Sequence[Sequence[str]],
    figures: Sequence[Figure],
    notes: Sequence[str] = (),
) -> str:
    results = _table(*table_rows(summary, columns))
    if stopping:
        results += "<p>Early-stopping criteria replayed on the logged runs:</p>"
        results += _table(STOPPING_HEADERS, stopping)
    images = "".join(
        f'<figure><img alt="{html.escape(c)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for _, c, data in figures
    )
    remarks = "".join(f"<p>Note: {html.escape(n)}</p>" for n in notes)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(description.strip())}</p><p>{html.escape(status)}</p>"
        f"{results}{images}{remarks}</body></html>\n"
    )
