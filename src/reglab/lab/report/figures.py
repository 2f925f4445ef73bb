"""The report's figures: matplotlib's object API (no pyplot, no display), drawn from the
numbers of :mod:`reglab.lab.report.summaries`.

Every panel has labelled axes with units (:func:`axis_labels` reads them back: the report
records them next to each figure, and a test checks them). Value axes are fitted to the data,
so the differences a study is about are visible (97 % and 99 % do not share a bar from 0); a
*collapsed* configuration (accuracy below half the best one's) is drawn at the axis edge with
its value written out, instead of stretching the axis over 10–99 %.

A figure renders to PNG (:func:`png`, for ``summary.md``) and to SVG with hover values
(:func:`svg`: each marked artist carries an SVG ``<title>``, which browsers show as a
tooltip; no script, no server).
"""

from __future__ import annotations

import functools
import html
import io
import math
import re
import textwrap
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from reglab._optional import require
from reglab.lab.metrics import Metric

__all__ = [
    "axis_labels",
    "coefficients_figure",
    "ensemble_figure",
    "histogram_figure",
    "learning_curves_figure",
    "log_scale",
    "png",
    "reliability_figure",
    "results_figure",
    "styled",
    "svg",
]

#: Reliability bins with fewer test samples than this are drawn hollow and not joined.
SPARSE_BIN = 20


#: matplotlib settings every report figure is built under. Titles sit at a fixed height
#: (matplotlib's automatic placement measures every tick label of the panel on each draw,
#: about a tenth of the report's time; no panel here has ticks or labels above it, which is
#: what it would move the title for); axis values are written in full, never as an offset
#: ("+9.6e1") in the panel's corner, where it would meet the title.
STYLE = {"axes.titley": 1.0, "axes.formatter.useoffset": False}

_Builder = TypeVar("_Builder", bound=Callable[..., Any])


def styled(build: _Builder) -> _Builder:
    """Decorate a figure builder: it runs under :data:`STYLE` (read when axes are created,
    so the style holds for every later draw of the figure)."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return build(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def log_scale(axis: Any, base: float = 10) -> None:
    """Put ``axis`` (``ax.xaxis`` or ``ax.yaxis``) on a log scale with minor ticks at 2 and
    5 × each power of 10 only (matplotlib's default is 8 per decade, each a tick object with
    its label, built and laid out on the first draw: a fifth of the report's drawing); they
    are labelled, as matplotlib labels minor ticks, when the axis spans too few decades for
    the major ticks to read. Base 2 (counts of members) gets no minor ticks."""
    from matplotlib.ticker import LogLocator, NullLocator

    scale = axis.axes.set_xscale if axis is axis.axes.xaxis else axis.axes.set_yscale
    scale("log", base=base)
    axis.set_minor_locator(LogLocator(base, subs=(2.0, 5.0)) if base == 10 else NullLocator())


def _figure(**kwargs: Any) -> Any:
    fig = require("matplotlib.figure", "reglab's reports").Figure(**kwargs)
    fig.reglab_tips = {}  # SVG id -> hover text
    return fig


def _tip(fig: Any, artist: Any, text: str) -> None:
    """Give ``artist`` a hover text in the SVG rendering."""
    gid = f"tip{len(fig.reglab_tips)}"
    artist.set_gid(gid)
    fig.reglab_tips[gid] = text


def png(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def svg(fig: Any) -> str:
    """The figure as an inline ``<svg>`` element (text as text, no XML prolog), each artist
    marked by :func:`_tip` holding a ``<title>`` with its values."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "reglab"}):
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    tips = getattr(fig, "reglab_tips", {})

    def titled(match: re.Match[str]) -> str:
        tip = tips.get(match.group(1))
        return match.group(0) + (f"<title>{html.escape(tip)}</title>" if tip else "")

    return re.sub(r'<g id="(tip\d+)"[^>]*>', titled, text)


def axis_labels(fig: Any) -> list[dict[str, str]]:
    """Each panel's title, x label and y label (what the report records per figure)."""
    return [
        {"title": ax.get_title(), "x": ax.get_xlabel(), "y": ax.get_ylabel()}
        for ax in fig.axes
        if ax.get_visible() and ax.axison
    ]


def _unit(m: Metric) -> str:
    if m.scale == 100:
        return " (pts)" if m.header.endswith("pts") else " (%)"
    return " (s)" if m.key.endswith("seconds") else ""


def _spaced(fig: Any, title: str) -> None:
    """Fixed margins and gaps, in inches, for a grid of small panels with 7-point tick labels
    and axis labels, an 8-point title each and a 9-point ``title`` above them all
    (``tight_layout`` measures every tick label: most of a grid's drawing time)."""
    nrows, ncols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    width, height = fig.get_size_inches()
    # A narrow figure (one panel) wraps the title: about 0.075 in per 9-point character.
    lines = textwrap.wrap(title, width=max(10, int((width - 0.2) / 0.075)))
    left, right, bottom, wgap, hgap = 0.75, 0.15, 0.5, 0.75, 0.75
    top = 0.45 + 0.15 * len(lines)
    panel_w = (width - left - right - (ncols - 1) * wgap) / ncols
    panel_h = (height - bottom - top - (nrows - 1) * hgap) / nrows
    fig.suptitle("\n".join(lines), fontsize=9, y=1 - 0.1 / height, va="top")
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wgap / panel_w,
        hspace=hgap / panel_h,
    )


def _grid_axes(fig: Any, n: int, ncols: int = 4, **kwargs: Any) -> list[Any]:
    """``n`` panels, ``ncols`` to a row; ``sharex=True`` / ``sharey=True`` share that axis
    with the first panel, and then its tick labels are written once per column (on the
    lowest panel) / once per row (on the first), as the scale is the same."""
    nrows = math.ceil(n / ncols)
    first = fig.add_subplot(nrows, min(ncols, n), 1)
    shared = {k: first for k, v in kwargs.items() if v}
    axes = [first] + [fig.add_subplot(nrows, min(ncols, n), i + 1, **shared) for i in range(1, n)]
    for i, ax in enumerate(axes):
        if "sharey" in shared and i % ncols:
            ax.tick_params(labelleft=False)
        if "sharex" in shared and i + ncols < n:
            ax.tick_params(labelbottom=False)
    return axes


def _fit(ax: Any, low: float, high: float) -> tuple[float, float] | None:
    """Limit the value axis to the data with a margin (a constant gets a window of 10 % of
    its size); returns the limits."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    span = high - low or max(abs(high), 1.0) * 0.1
    limits = (low - 0.15 * span, high + 0.15 * span)
    ax.set_xlim(*limits)
    return limits


@styled
def results_figure(
    summary: Sequence[dict[str, Any]],
    metrics: Sequence[Metric],
    collapsed: Collection[str] = (),
) -> Any:
    """One panel per metric: each configuration's mean (dot) and seed spread (bar). Rows
    whose point is in ``collapsed`` do not set the axis: drawn as a ◀ at the left edge, their
    value written next to it."""
    fig = _figure(figsize=(3.4 * len(metrics), 0.35 * len(summary) + 1.5))
    labels = [r["label"] for r in summary]
    for j, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), j + 1)
        stats = [r["metrics"].get(m.key, (math.nan, math.nan)) for r in summary]
        means = [m.scale * mu if mu is not None else math.nan for mu, _ in stats]
        stds = [
            m.scale * (s or 0.0) if s is not None and not math.isnan(s) else 0.0 for _, s in stats
        ]
        fitted = [
            (mu - s, mu + s)
            for r, mu, s in zip(summary, means, stds, strict=True)
            if math.isfinite(mu) and r["point"] not in collapsed
        ]
        limits = (
            _fit(ax, min(lo for lo, _ in fitted), max(hi for _, hi in fitted)) if fitted else None
        )
        for i, (r, mu, s) in enumerate(zip(summary, means, stds, strict=True)):
            if not math.isfinite(mu):
                continue
            text = f"{r['label']}: {m.title} {mu:.{m.decimals}f} ± {s:.{m.decimals}f}{_unit(m)}"
            outside = limits is not None and not (limits[0] <= mu <= limits[1])
            if r["point"] in collapsed and outside:
                edge = limits[0] if mu < limits[0] else limits[1]  # type: ignore[index]
                marker = "<" if mu < limits[0] else ">"  # type: ignore[index]
                (dot,) = ax.plot([edge], [i], marker=marker, color="tab:red", ms=6, clip_on=False)
                ax.annotate(
                    f"collapsed: {mu:.{m.decimals}f}",
                    (edge, i),
                    xytext=(6 if marker == "<" else -6, 0),
                    textcoords="offset points",
                    ha="left" if marker == "<" else "right",
                    va="center",
                    fontsize=6,
                    color="tab:red",
                )
                _tip(fig, dot, text + " (collapsed; off the axis)")
                continue
            bars = ax.errorbar([mu], [i], xerr=[s], fmt="o", capsize=3, ms=4, color="tab:blue")
            _tip(fig, bars.lines[0], text)
        ax.set_yticks(range(len(labels)), labels if j == 0 else [""] * len(labels), fontsize=7)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(m.title, fontsize=8)
        ax.set_xlabel(f"{m.title}{_unit(m)}", fontsize=7)
        ax.set_ylabel("configuration", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        "Mean ± std over seeds"
        + ("; ◀ ▶ a collapsed configuration, off the fitted axis" if collapsed else ""),
        fontsize=8,
    )
    fig.tight_layout()
    return fig


@styled
def learning_curves_figure(
    curve_data: dict[str, dict[str, Any]], loss: str = "data loss", held_out: str = "held-out"
) -> Any:
    """One panel per configuration: the seed-mean training and held-out ``loss`` per epoch
    (log axis); ``held_out`` names the held-out data (``"validation"`` or ``"test"``) in the
    legend."""
    n = len(curve_data)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(3.2 * ncols, 2.6 * nrows))
    axes = _grid_axes(fig, n, sharey=True)
    for i, (ax, c) in enumerate(zip(axes, curve_data.values(), strict=True)):
        for key, name in (("loss", "train"), ("val_loss", held_out)):
            if key in c:
                epochs = range(1, len(c[key]) + 1)
                (line,) = ax.plot(epochs, c[key], label=name)
                last = c[key][-1]
                _tip(fig, line, f"{c['label']}: {name} {loss}, epoch {len(c[key])}: {last:.4g}")
        ax.set_title(c["label"], fontsize=8)
        log_scale(ax.yaxis)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel(f"{loss} (log)", fontsize=7)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    _spaced(fig, f"Learning curves ({loss}, mean over seeds; shared y axis)")
    return fig


@styled
def coefficients_figure(
    series: dict[str, dict[str, Any]],
    metrics: dict[str, Metric],
    baseline: Mapping[str, tuple[float, float]] | None = None,
) -> Any:
    """Per swept entry, each metric against the coefficient: mean over seeds with the seed
    spread (± std) as error bars; ``baseline[key]`` = (mean, std) as a dashed line and band."""
    fig = _figure(figsize=(10, 2.9 * len(series)))
    for i, (entry, s) in enumerate(series.items()):
        for j, key in enumerate(s["metrics"]):
            m = metrics[key]
            ax = fig.add_subplot(len(series), 3, i * 3 + j + 1)
            mean = [m.scale * v for v in s[key]["mean"]]
            std = [m.scale * (v if math.isfinite(v) else 0.0) for v in s[key]["std"]]
            param = s["param"].split(".")[-1]
            for x, mu, sd in zip(s["x"], mean, std, strict=True):
                if math.isfinite(mu):
                    bars = ax.errorbar(
                        [x], [mu], yerr=[sd], marker="o", capsize=3, color="tab:blue"
                    )
                    _tip(
                        fig,
                        bars.lines[0],
                        f"{entry} {param}={x:g}: "
                        f"{mu:.{m.decimals}f} ± {sd:.{m.decimals}f}{_unit(m)}",
                    )
            ax.plot(s["x"], mean, color="tab:blue", lw=1)
            if baseline and key in baseline and math.isfinite(baseline[key][0]):
                mu, sd = (m.scale * v for v in baseline[key])
                line = ax.axhline(mu, color="grey", ls="--", lw=0.8, label="baseline")
                ax.axhspan(mu - (sd or 0.0), mu + (sd or 0.0), color="grey", alpha=0.15, lw=0)
                _tip(fig, line, f"baseline: {mu:.{m.decimals}f} ± {sd:.{m.decimals}f}{_unit(m)}")
                if i == 0 and j == 0:
                    ax.legend(fontsize=7)
            if min(s["x"]) > 0:
                log_scale(ax.xaxis)
            ax.set_xlabel(f"{param} (log axis)" if min(s["x"]) > 0 else param, fontsize=8)
            ax.set_ylabel(f"{m.title}{_unit(m)}", fontsize=8)
            ax.set_title(f"{entry}: {m.title}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


@styled
def reliability_figure(data: dict[str, dict[str, Any]], sparse: int = SPARSE_BIN) -> Any:
    """Per configuration, accuracy against confidence of the test-set bins (pooled over
    seeds). Along the bottom, each bin's sample count: a bar (log height) with the number
    written on it; bins with fewer than ``sparse`` samples are drawn hollow (orange bar) and
    not joined to the line: their accuracy is noise."""
    n = len(data)
    fig = _figure(figsize=(2.8 * min(4, n), 2.9 * math.ceil(n / 4)))
    for ax, d in zip(_grid_axes(fig, n), data.values(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        counts = d["count"]
        width = 1 / len(counts)  # equal-width bins over [0, 1]
        top = math.log10(1 + max(counts, default=0) or 1) or 1.0
        for i, k in enumerate(counts):
            if not k:
                continue
            few = k < sparse
            height = 0.22 * math.log10(1 + k) / top
            (bar,) = ax.bar(
                (i + 0.5) * width,
                height,
                width * 0.9,
                color="tab:orange" if few else "grey",
                alpha=0.45,
                lw=0,
            )
            _tip(fig, bar, f"{d['label']}: bin {i + 1}, {int(k)} samples")
            ax.text(
                (i + 0.5) * width, height + 0.01, str(int(k)), rotation=90, fontsize=5.5,
                ha="center", va="bottom", color="tab:orange" if few else "dimgrey",
            )  # fmt: skip
        dense = [
            (c, a)
            for c, a, k in zip(d["confidence"], d["accuracy"], counts, strict=True)
            if k >= sparse
        ]
        if dense:
            ax.plot(*zip(*dense, strict=True), color="tab:blue", lw=1)
        for c, a, k in zip(d["confidence"], d["accuracy"], counts, strict=True):
            if not k or not (math.isfinite(c) and math.isfinite(a)):
                continue
            few = k < sparse
            (dot,) = ax.plot(
                [c], [a], marker="o", ms=4, color="tab:blue", mfc="white" if few else "tab:blue"
            )
            _tip(
                fig,
                dot,
                f"{d['label']}: confidence {c:.3f}, accuracy {a:.3f}, {int(k)} samples"
                + (" (too few)" if few else ""),
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_title(d["label"], fontsize=8)
        ax.set_xlabel("confidence (mean of bin)", fontsize=7)
        ax.set_ylabel("accuracy (fraction)", fontsize=7)
        ax.tick_params(labelsize=7)
    _spaced(
        fig,
        f"Reliability diagrams (test set, 15 bins; bars: samples per bin, log height; hollow "
        f"points, orange bars: fewer than {sparse} samples): accuracy vs confidence",
    )
    return fig


@styled
def histogram_figure(data: dict[str, dict[str, list[float]]]) -> Any:
    """Per configuration, the histogram of its kernel entries over one shared range (shared
    x and y axes, log counts, plain tick labels)."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    n = len(data)
    fig = _figure(figsize=(2.8 * min(4, n), 2.4 * math.ceil(n / 4)))
    axes = _grid_axes(fig, n, sharex=True, sharey=True)
    for ax, (label, h) in zip(axes, data.items(), strict=True):
        patch = ax.stairs(h["counts"], h["edges"], fill=True)
        total = int(sum(h["counts"]))
        _tip(fig, patch, f"{label}: {total} kernel entries")
        log_scale(ax.yaxis)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("weight value", fontsize=7)
        ax.set_ylabel("entries (log)", fontsize=7)
        ax.tick_params(labelsize=7)
    first = axes[0]
    first.xaxis.set_major_locator(MaxNLocator(5, symmetric=True))
    first.xaxis.set_major_formatter(lambda x, _: f"{x:.2g}")
    first.yaxis.set_major_locator(LogLocator(base=10, numticks=5))
    first.yaxis.set_minor_formatter(NullFormatter())
    _spaced(fig, "Kernel weight histograms (first seed; shared axes, log count)")
    return fig


@styled
def ensemble_figure(curve: dict[str, list[float]]) -> Any:
    fig = _figure(figsize=(8, 3.0))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(curve["k"], curve["ensemble_mse"], marker="o", label="ensemble (measured)")
    ax.plot(curve["k"], curve["predicted_mse"], ls="--", label="v/k + (k-1)c/k")
    ax.plot(curve["k"], curve["mean_member_mse"], marker="s", label="mean member")
    log_scale(ax.xaxis, base=2)
    ax.set_xlabel("members k (log₂ axis)", fontsize=8)
    ax.set_ylabel("squared error of probabilities", fontsize=8)
    ax.set_title("squared error of probabilities", fontsize=8)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(curve["k"], [100 * a for a in curve["test_acc"]], marker="o", label="ensemble")
    ax.plot(
        curve["k"], [100 * a for a in curve["mean_member_acc"]], marker="s", label="mean member"
    )
    log_scale(ax.xaxis, base=2)
    ax.set_xlabel("members k (log₂ axis)", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.set_title("test accuracy (%)", fontsize=8)
    ax.legend(fontsize=7)
    for a in fig.axes:
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
