"""The report's figures: matplotlib's object API (no pyplot, no display), drawn from the
numbers of :mod:`reglab.lab.report.summaries`. Axes are fitted to the data, so the
differences a study is about are visible (97 % and 99 % do not share a bar from 0)."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from typing import Any

from reglab._optional import require
from reglab.lab.metrics import Metric

__all__ = [
    "coefficients_figure",
    "ensemble_figure",
    "histogram_figure",
    "learning_curves_figure",
    "png",
    "reliability_figure",
    "results_figure",
]


def _figure(**kwargs: Any) -> Any:
    return require("matplotlib.figure", "reglab's reports").Figure(**kwargs)


def png(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _spaced(fig: Any, title: str) -> None:
    """Fixed margins and gaps, in inches, for a grid of small panels with 7-point tick labels,
    an 8-point title each and a 9-point ``title`` above them all (``tight_layout`` measures
    every tick label: most of a grid's drawing time)."""
    nrows, ncols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    width, height = fig.get_size_inches()
    # A narrow figure (one panel) wraps the title: about 0.075 in per 9-point character.
    lines = textwrap.wrap(title, width=max(10, int((width - 0.2) / 0.075)))
    left, right, bottom, wgap, hgap = 0.55, 0.15, 0.35, 0.55, 0.6
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


def _grid_axes(fig: Any, n: int, ncols: int = 4) -> list[Any]:
    nrows = math.ceil(n / ncols)
    return [fig.add_subplot(nrows, min(ncols, n), i + 1) for i in range(n)]


def _fit(ax: Any, low: float, high: float) -> None:
    """Limit the value axis to the data with a margin (a constant gets a unit-wide window)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    span = high - low or max(abs(high), 1.0) * 0.1
    ax.set_xlim(low - 0.15 * span, high + 0.15 * span)


def results_figure(summary: Sequence[dict[str, Any]], metrics: Sequence[Metric]) -> Any:
    """One panel per metric: each configuration's mean (dot) and seed spread (bar)."""
    fig = _figure(figsize=(3.4 * len(metrics), 0.35 * len(summary) + 1.2))
    labels = [r["label"] for r in summary]
    for j, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), j + 1)
        means = [m.scale * r["metrics"].get(m.key, (math.nan, 0))[0] for r in summary]
        stds = [m.scale * (r["metrics"].get(m.key, (0, 0))[1] or 0.0) for r in summary]
        ax.errorbar(means, range(len(labels)), xerr=stds, fmt="o", capsize=3, ms=4)
        shown = [(mu - s, mu + s) for mu, s in zip(means, stds, strict=True) if math.isfinite(mu)]
        if shown:
            _fit(ax, min(lo for lo, _ in shown), max(hi for _, hi in shown))
        ax.set_yticks(range(len(labels)), labels if j == 0 else [""] * len(labels), fontsize=7)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        suffix = " (%)" if m.scale == 100 else ""
        ax.set_title(m.title + suffix, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def learning_curves_figure(
    curve_data: dict[str, dict[str, Any]], held_out: str = "held-out"
) -> Any:
    """Training and held-out loss per configuration; ``held_out`` names the held-out data
    (``"validation"`` or ``"test"``) in the legend."""
    n = len(curve_data)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(3.2 * ncols, 2.4 * nrows))
    for i, c in enumerate(curve_data.values()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        if "loss" in c:
            ax.plot(range(1, len(c["loss"]) + 1), c["loss"], label="train")
        if "val_loss" in c:
            ax.plot(range(1, len(c["val_loss"]) + 1), c["val_loss"], label=held_out)
        ax.set_title(c["label"], fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    _spaced(fig, "Learning curves (data loss, mean over seeds)")
    return fig


def coefficients_figure(series: dict[str, dict[str, Any]], metrics: dict[str, Metric]) -> Any:
    fig = _figure(figsize=(10, 2.8 * len(series)))
    for i, (entry, s) in enumerate(series.items()):
        for j, key in enumerate(s["metrics"]):
            m = metrics[key]
            ax = fig.add_subplot(len(series), 3, i * 3 + j + 1)
            mean = [m.scale * v for v in s[key]["mean"]]
            std = [m.scale * v for v in s[key]["std"]]
            ax.errorbar(s["x"], mean, yerr=std, marker="o", capsize=3)
            if min(s["x"]) > 0:
                ax.set_xscale("log")
            ax.set_xlabel(s["param"].split(".")[-1], fontsize=8)
            ax.set_title(f"{entry}: {m.title}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def reliability_figure(data: dict[str, dict[str, Any]]) -> Any:
    n = len(data)
    fig = _figure(figsize=(2.6 * min(4, n), 2.5 * math.ceil(n / 4)))
    for ax, d in zip(_grid_axes(fig, n), data.values(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(d["confidence"], d["accuracy"], marker="o", ms=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(d["label"], fontsize=8)
        ax.tick_params(labelsize=7)
    _spaced(fig, "Reliability diagrams (test set, 15 bins): accuracy vs confidence")
    return fig


def histogram_figure(data: dict[str, dict[str, list[float]]]) -> Any:
    n = len(data)
    fig = _figure(figsize=(2.6 * min(4, n), 2.2 * math.ceil(n / 4)))
    for ax, (label, h) in zip(_grid_axes(fig, n), data.items(), strict=True):
        ax.stairs(h["counts"], h["edges"], fill=True)
        ax.set_yscale("log")
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
    _spaced(fig, "Kernel weight histograms (first seed; log count)")
    return fig


def ensemble_figure(curve: dict[str, list[float]]) -> Any:
    fig = _figure(figsize=(8, 2.8))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(curve["k"], curve["ensemble_mse"], marker="o", label="ensemble (measured)")
    ax.plot(curve["k"], curve["predicted_mse"], ls="--", label="v/k + (k-1)c/k")
    ax.plot(curve["k"], curve["mean_member_mse"], marker="s", label="mean member")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("members k", fontsize=8)
    ax.set_title("squared error of probabilities", fontsize=8)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(curve["k"], [100 * a for a in curve["test_acc"]], marker="o", label="ensemble")
    ax.plot(
        curve["k"], [100 * a for a in curve["mean_member_acc"]], marker="s", label="mean member"
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("members k", fontsize=8)
    ax.set_title("test accuracy (%)", fontsize=8)
    ax.legend(fontsize=7)
    for a in fig.axes:
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
