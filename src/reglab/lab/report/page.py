"""The report's text: ``summary.md`` (static PNGs) and a self-contained ``report.html``.

Both open with the *first screen*: each configuration's settings in words, its change against
the baseline in the deciding metrics (paired by seed) and a one-line verdict
(:mod:`reglab.lab.report.comparison`). Then every metric, the training time, the figures and
a glossary of every column (:mod:`reglab.lab.report.glossary`).

The HTML page needs no server and no library: its tables sort on a header click and filter
as one types (a few lines of inline script), and its figures are inline SVG whose points show
their values on hover (SVG ``<title>``). Each ``<figure>`` records its panels' axis labels in
``data-axes`` (JSON).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reglab.lab.metrics import Metric, format_value
from reglab.lab.report.comparison import Comparison, format_delta
from reglab.lab.report.glossary import Entry
from reglab.lab.report.summaries import STOPPING_HEADERS, table_rows

__all__ = ["Figure", "Page", "html_page", "markdown_page"]


@dataclass(frozen=True)
class Figure:
    """A rendered figure: file ``name`` (the PNG beside ``summary.md``), ``caption``, PNG
    bytes, the inline SVG (None: the HTML embeds the PNG) and each panel's axis labels."""

    name: str
    caption: str
    png: bytes
    svg: str | None = None
    axes: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """Everything a report page shows."""

    title: str
    description: str
    status: str
    summary: Sequence[dict[str, Any]]
    columns: Sequence[Metric]
    stopping: Sequence[Sequence[str]] = ()
    figures: Sequence[Figure] = ()
    notes: Sequence[str] = ()
    comparisons: Sequence[Comparison] = ()
    baseline: str | None = None  # the baseline's label
    deciding: Sequence[Metric] = ()
    glossary: Sequence[Entry] = ()
    time: str = ""


def _baseline_line(page: Page) -> str:
    if page.baseline is None:
        return (
            "No baseline: the study has no configuration named `none` and declares none "
            '(`baseline = "name"` in the study file), so nothing is compared.'
        )
    return (
        f"Baseline: `{page.baseline}`. Each change is configuration − baseline for the same "
        "seed, mean ± std over the seeds both trained (percent metrics in percentage points); "
        "*clear* means more than two standard errors from 0."
    )


# -- Markdown -------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _first_screen_md(page: Page) -> str:
    shown = [m for m in page.deciding if m.key in ("test_acc", "val_acc", "test_mse", "test_ppl")]
    shown = shown[:1]
    headers = ["config", "settings", *(m.header for m in shown), "verdict"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    rows = {r["point"]: r for r in page.summary}
    for c in page.comparisons:
        cells = [_md(c.label), _md(c.settings)]
        for m in shown:
            stats = rows.get(c.point, {}).get("metrics", {}).get(m.key)
            cells.append(format_value(m, *stats) if stats else "n/a")
        cells.append(_md(c.verdict))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_page(page: Page) -> str:
    """``summary.md``: the first screen, the full table, the figures (PNG files), the
    glossary."""
    parts = [f"# {page.title}", page.description.strip(), page.status]
    if page.comparisons:
        parts += ["## What each configuration did", _baseline_line(page), _first_screen_md(page)]
    headers, rows = table_rows(page.summary, page.columns)
    parts += [
        "## All metrics (mean ± std over seeds)",
        "\n".join(
            ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(_md(c) for c in cells) + " |" for cells in rows]
        ),
    ]
    if page.time:
        parts.append(page.time)
    if page.stopping:
        parts.append(
            "Early-stopping criteria replayed on the logged runs:\n\n"
            + f"| {' | '.join(STOPPING_HEADERS)} |\n|"
            + "---|" * len(STOPPING_HEADERS)
            + "".join(f"\n| {' | '.join(cells)} |" for cells in page.stopping)
        )
    if page.figures:
        parts.append("## Figures")
        parts += [f"![{f.caption}]({f.name})" for f in page.figures]
    parts += [f"Note: {note}" for note in page.notes]
    if page.glossary:
        parts.append("## Glossary")
        parts.append(
            "\n".join(
                f"- **{_md(e.header)}** ({_md(e.title)}{', ' + e.unit if e.unit else ''}): "
                f"{_md(e.description)}"
                for e in page.glossary
            )
        )
    return "\n\n".join(parts) + "\n"


# -- HTML -----------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:1.5em auto;padding:0 1em;
color:#222}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}.scroll{overflow-x:auto}
th.t{text-align:left}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3;cursor:pointer;white-space:nowrap}th[data-dir=asc]::after{content:" ▲"}
th[data-dir=desc]::after{content:" ▼"}td.t{text-align:left}td.n{white-space:nowrap}
td.settings{min-width:9em;max-width:16em;font-family:ui-monospace,monospace;font-size:.85em}
td.verdict{text-align:left;min-width:16em;max-width:24em}.d{display:block;font-size:.85em;color:#555}
.d.clear{font-weight:bold;color:#000}.good{color:#1a7f37!important}.bad{color:#c0392b!important}
tr.baseline td{background:#f8f8ff}tr.collapsed td{background:#fff4f4}
#filter{margin:.4em 0;padding:3px 6px;width:20em}figure{margin:1.2em 0}
figure svg{max-width:100%;height:auto}figcaption{font-size:.9em;color:#444}
dt{font-weight:bold;margin-top:.4em}dd{margin-left:1.5em}.muted{color:#666;font-size:.9em}"""

_SCRIPT = """document.querySelectorAll('table.sortable').forEach(function(t){
var hs=t.tHead.rows[0].cells;Array.prototype.forEach.call(hs,function(th,i){
th.addEventListener('click',function(){var asc=th.dataset.dir!=='asc';
Array.prototype.forEach.call(hs,function(h){delete h.dataset.dir});th.dataset.dir=asc?'asc':'desc';
var key=function(r){var c=r.cells[i];if(!c)return '';var v=c.dataset.sort;
return v===undefined?c.textContent.trim():(v===''?NaN:parseFloat(v))};
var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);rows.sort(function(p,q){
var x=key(p),y=key(q);if(typeof x==='number'&&typeof y==='number'){
if(isNaN(x))return isNaN(y)?0:1;if(isNaN(y))return -1;return asc?x-y:y-x}
return asc?String(x).localeCompare(String(y)):String(y).localeCompare(String(x))});
rows.forEach(function(r){b.appendChild(r)})})})});
var f=document.getElementById('filter');if(f)f.addEventListener('input',function(){
var q=f.value.toLowerCase();document.querySelectorAll('table.sortable tbody tr').forEach(
function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':''})});"""


def _e(text: Any) -> str:
    return html.escape(str(text))


_TEXT_COLUMNS = ("config", "settings", "verdict")


def _inline(text: str) -> str:
    """Escaped ``text`` with Markdown's `code` and *emphasis* as HTML."""
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", _e(text))
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def _th(header: str, description: str = "") -> str:
    title = f' title="{_e(description)}"' if description else ""
    align = ' class="t"' if header in _TEXT_COLUMNS else ""
    return f"<th{title}{align}>{_e(header)}</th>"


def _sort_value(m: Metric, stats: tuple[float, float] | None) -> str:
    if stats is None or stats[0] is None or math.isnan(stats[0]):
        return ""
    return f"{m.scale * stats[0]:.6g}"


def _delta_cell(c: Comparison, m: Metric) -> str:
    d = c.deltas.get(m.key)
    if d is None:
        return ""
    tone = ""
    if d.clear and d.improved is not None and not c.collapsed:  # no praise for a collapse
        tone = " good" if d.improved else " bad"
    clear = " clear" if d.clear else ""
    return f'<span class="d{clear}{tone}">Δ {_e(format_delta(d))}</span>'


def _first_screen(page: Page, describe: dict[str, str]) -> str:
    rows = {r["point"]: r for r in page.summary}
    head = (
        "<tr>"
        + _th("config", describe.get("config", ""))
        + _th("settings", describe.get("settings", ""))
        + _th("verdict", describe.get("verdict", ""))
        + _th("seeds", describe.get("seeds", ""))
        + "".join(_th(m.header, describe.get(m.key, "")) for m in page.deciding)
        + "</tr>"
    )
    body = []
    for c in page.comparisons:
        metrics = rows.get(c.point, {}).get("metrics", {})
        cells = [
            f'<td class="t">{_e(c.label)}</td>',
            f'<td class="t settings">{_e(c.settings)}</td>',
            f'<td class="verdict">{_e(c.verdict)}</td>',
            f'<td data-sort="{c.seeds}">{c.seeds}</td>',
        ]
        for m in page.deciding:
            stats = metrics.get(m.key)
            text = format_value(m, *stats) if stats else "n/a"
            cells.append(
                f'<td class="n" data-sort="{_sort_value(m, stats)}">{_e(text)}'
                f"{_delta_cell(c, m)}</td>"
            )
        kind = " baseline" if c.is_baseline else ""
        kind += " collapsed" if c.collapsed else ""
        body.append(
            f'<tr class="config{kind}" data-point="{_e(c.point)}">' + "".join(cells) + "</tr>"
        )
    return (
        f'<div class="scroll"><table id="overview" class="sortable"><thead>{head}</thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    ident: str,
    titles: Sequence[str] = (),
    sort: Sequence[Sequence[str]] = (),
) -> str:
    titles = list(titles) + [""] * (len(headers) - len(titles))
    head = "".join(_th(h, t) for h, t in zip(headers, titles, strict=True))
    body = []
    for i, row in enumerate(rows):
        keys = sort[i] if i < len(sort) else ()
        cells = []
        for j, c in enumerate(row):
            attr = f' data-sort="{_e(keys[j])}"' if j < len(keys) and keys[j] is not None else ""
            cells.append(f'<td class="{"t" if j == 0 else "n"}"{attr}>{_e(c)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table id="{ident}" class="sortable"><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _results(page: Page, describe: dict[str, str]) -> str:
    headers, rows = table_rows(page.summary, page.columns)
    titles = ["config", "seeds", *(describe.get(m.key, m.title) for m in page.columns)]
    sort = [
        [
            None,
            str(len(r["seeds"])),
            *(_sort_value(m, r["metrics"].get(m.key)) for m in page.columns),
        ]
        for r in page.summary
    ]
    return _table(headers, rows, "results", titles, sort)


def _figure_html(f: Figure) -> str:
    axes = _e(json.dumps(f.axes, ensure_ascii=False))
    ident = f.name.rsplit(".", 1)[0]
    if f.svg is not None:
        body = f.svg
    else:
        body = (
            f'<img alt="{_e(f.caption)}" src="data:image/png;base64,'
            f'{base64.b64encode(f.png).decode()}">'
        )
    return (
        f'<figure id="fig-{_e(ident)}" data-axes="{axes}">{body}'
        f"<figcaption>{_e(f.caption)}</figcaption></figure>"
    )


def html_page(page: Page) -> str:
    """``report.html``: one file, figures inline, sortable and filterable tables."""
    describe = {e.key: e.description for e in page.glossary}
    parts = [
        f"<h1>{_e(page.title)}</h1>",
        f"<p>{_e(page.description.strip())}</p>",
        f'<p class="muted">{_e(page.status)}</p>',
        '<input id="filter" type="search" placeholder="filter rows (e.g. L1)">'
        '<span class="muted"> · click a column header to sort · hover a header for its '
        "definition, a point of a figure for its values</span>",
    ]
    if page.comparisons:
        parts += [
            '<section id="first-screen"><h2>What each configuration did</h2>',
            f"<p>{_inline(_baseline_line(page))}</p>",
            _first_screen(page, describe),
            "</section>",
        ]
    parts += ['<section id="all-metrics"><h2>All metrics (mean ± std over seeds)</h2>']
    parts.append(_results(page, describe))
    if page.time:
        parts.append(f'<p id="time">{_e(page.time)}</p>')
    if page.stopping:
        parts.append("<p>Early-stopping criteria replayed on the logged runs:</p>")
        parts.append(_table(STOPPING_HEADERS, page.stopping, "stopping"))
    parts.append("</section>")
    if page.figures:
        parts.append('<section id="figures"><h2>Figures</h2>')
        parts += [_figure_html(f) for f in page.figures]
        parts.append("</section>")
    parts += [f"<p>Note: {_e(n)}</p>" for n in page.notes]
    if page.glossary:
        entries = "".join(
            f'<dt id="g-{_e(e.key)}">{_e(e.header)} <span class="muted">— {_e(e.title)}'
            f"{', ' + _e(e.unit) if e.unit else ''}</span></dt><dd>{_inline(e.description)}</dd>"
            for e in page.glossary
        )
        parts.append(f'<section id="glossary"><h2>Glossary</h2><dl>{entries}</dl></section>')
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page.title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(parts)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
