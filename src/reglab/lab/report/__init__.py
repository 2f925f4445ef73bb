"""Reports of a run: pure summaries (:mod:`~reglab.lab.report.summaries`), figures
(:mod:`~reglab.lab.report.figures`) and the pages (:mod:`~reglab.lab.report.page`), put
together by :func:`write_report`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reglab._io import atomic_write, atomic_write_text
from reglab.lab.metrics import metric, pick
from reglab.lab.report import figures
from reglab.lab.report.page import html_page, markdown_page
from reglab.lab.report.summaries import (
    coefficient_series,
    curves,
    ensemble_curve,
    markdown_table,
    reliability,
    stopping_rows,
    summarize,
    table_columns,
    weight_histograms,
)
from reglab.lab.rundir import CheckpointError, RunDir
from reglab.lab.settings.selection import held_out_split
from reglab.lab.sweep.objective import choice_line, study_objective
from reglab.layouts import is_kernel

__all__ = [
    "coefficient_series",
    "curves",
    "ensemble_curve",
    "markdown_table",
    "reliability",
    "stopping_rows",
    "summarize",
    "table_columns",
    "weight_histograms",
    "write_report",
]

Record = dict[str, Any]


def _first_seed(records: Sequence[Record]) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for r in records:
        out.setdefault(r["point"], r)
    return out


def _weights(run_dir: RunDir, record: Record, notes: list[str]) -> dict[str, Any] | None:
    """A trial's checkpoint, checked against its model; a bad one becomes a note."""
    try:
        return run_dir.weights(record["key"], record.get("tensors"))
    except CheckpointError as err:
        notes.append(f"{err}; not drawn")
        return None


def _kernels(run_dir: RunDir, records: Sequence[Record], notes: list[str]) -> dict[str, list[Any]]:
    """First seed's kernels of each point, from the checkpoints saved in ``run_dir``."""
    out: dict[str, list[Any]] = {}
    for r in _first_seed(records).values():
        tensors = _weights(run_dir, r, notes)
        if tensors is not None:
            out[r["label"]] = [t for n, t in tensors.items() if is_kernel(n.rsplit(".", 1)[-1], t)]
    return out


def _filters(
    run_dir: RunDir, records: Sequence[Record], notes: list[str]
) -> dict[str, tuple[str, Any]]:
    """First seed's encoder filters (``encoder.0.weight``) of each autoencoder point."""
    out = {}
    for point, r in _first_seed(records).items():
        tensors = _weights(run_dir, r, [])  # a bad file is noted once, by _kernels
        if tensors is not None and "encoder.0.weight" in tensors:
            out[point] = (r["label"], torch.as_tensor(tensors["encoder.0.weight"]))
    return out


def write_report(run_dir: RunDir, study: Any, records: Sequence[Record], total_trials: int) -> Any:
    """Write the figures, ``summary.md`` and ``report.html`` of ``study``'s ``records`` into
    ``run_dir``; returns the HTML path."""
    summary = summarize(records)
    columns = table_columns(summary)
    rendered: list[tuple[str, str, bytes]] = []

    def add(name: str, caption: str, figure: Any) -> None:
        data = figures.png(figure)
        atomic_write(run_dir.output(name), lambda f: f.write(data))
        rendered.append((name, caption, data))

    trained = [r for r in records if not r.get("diverged")]  # figures show trained models
    notes: list[str] = []
    if trained:
        recorded = {k for row in summary for k in row["metrics"]}
        add(
            "results.png",
            "Results per configuration (mean ± std over seeds)",
            figures.results_figure(summary, pick(recorded, "bar", 3)),
        )
        curve_data = curves(trained)
        if curve_data:
            held_out = held_out_split(study.points[0].config.data)
            add(
                "learning_curves.png",
                f"Training vs {held_out} loss: the overfitting picture",
                figures.learning_curves_figure(curve_data, held_out),
            )
        histograms = weight_histograms(_kernels(run_dir, trained, notes))
        if histograms:
            add(
                "weights.png",
                "Weight histograms: L1 piles weights at zero, L2 shrinks them densely",
                figures.histogram_figure(histograms),
            )
        bins = reliability(trained)
        if bins:
            add(
                "reliability.png",
                "Calibration: points on the diagonal are calibrated",
                figures.reliability_figure(bins),
            )
        curve = ensemble_curve(summary)
        if curve:
            add(
                "ensemble.png",
                "Ensemble error vs number of members k: measured, predicted by "
                "v/k + (k-1)c/k, and the mean member",
                figures.ensemble_figure(curve),
            )
        image = study.points[0].config.data.dataset.image if study.points else None
        if image is not None:
            from reglab.autoencoders import plot_filters

            for point, (label, weight) in _filters(run_dir, trained, notes).items():
                add(
                    f"filters_{point}.png",
                    f"Encoder filters (first seed): {label}",
                    plot_filters(weight[:64], image[1:], ncols=16, title=label),
                )
        series = coefficient_series(summary)
        if series:
            keys = {k for s in series.values() for k in s["metrics"]}
            add(
                "coefficients.png",
                "Metrics vs swept coefficient (log axis, seed spread as error bars)",
                figures.coefficients_figure(series, {k: metric(k) for k in keys}),
            )
    title = f"reglab study: {study.name}"
    diverged = len(records) - len(trained)
    status = f"{len(trained)} of {total_trials} trials complete" + (
        f", {diverged} diverged." if diverged else "."
    )
    if len(summary) > 1:  # the choice, on validation only (reglab.lab.sweep.objective)
        status += " " + choice_line(summary, study_objective(study))
    stopping = stopping_rows(summary)
    page = (title, study.description, status, summary, columns, stopping, rendered, notes)
    atomic_write_text(run_dir.output("summary.md"), markdown_page(*page))
    return atomic_write_text(run_dir.output("report.html"), html_page(*page))
