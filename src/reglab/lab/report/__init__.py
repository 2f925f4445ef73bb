"""Reports of a run: pure summaries (:mod:`~reglab.lab.report.summaries`), the comparison
with the baseline (:mod:`~reglab.lab.report.comparison`), settings in words
(:mod:`~reglab.lab.report.describe`), the glossary (:mod:`~reglab.lab.report.glossary`),
figures (:mod:`~reglab.lab.report.figures`) and the pages (:mod:`~reglab.lab.report.page`),
put together by :func:`write_report`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reglab._io import atomic_write, atomic_write_text
from reglab.lab.metrics import metric, pick
from reglab.lab.report import figures
from reglab.lab.report.comparison import Comparison, compare, deciding_metrics, find_baseline
from reglab.lab.report.describe import describe_point
from reglab.lab.report.glossary import glossary
from reglab.lab.report.page import Figure, Page, html_page, markdown_page
from reglab.lab.report.pareto import front_sentence, pareto_figures
from reglab.lab.report.search_views import search_views
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
from reglab.lab.report.timing import describe_time, training_time
from reglab.lab.rundir import CheckpointError, RunDir
from reglab.lab.settings.selection import held_out_split
from reglab.lab.sweep.objective import choice_line, choosable, study_objective
from reglab.layouts import is_kernel

__all__ = [
    "coefficient_series",
    "compare",
    "curves",
    "describe_point",
    "ensemble_curve",
    "markdown_table",
    "reliability",
    "stopping_rows",
    "summarize",
    "table_columns",
    "training_time",
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


def _comparisons(study: Any, records: Sequence[Record]) -> tuple[list[Comparison], str | None]:
    """The first screen's rows and the baseline's key (the study's ``baseline``, else the
    point named ``none``)."""
    points = list(getattr(study, "points", ()))
    declared = getattr(study, "baseline", None)
    baseline = declared or find_baseline([(p.key, p.label, p.entry) for p in points])
    base = {s: study.table(s) for s in ("data", "model", "train")} if points else {}
    settings = {p.key: describe_point(p.config.raw, base) for p in points}
    return compare(records, baseline, settings), baseline


def _add_schedules(records: Sequence[Record], add: Any, notes: list[str]) -> None:
    """PBT members' coefficient schedules: a figure, and each as a note
    (:mod:`reglab.lab.report.schedules`)."""
    from reglab.lab.report.schedules import schedule_figure, schedule_lines, schedule_series

    series = schedule_series(records)
    if series:
        add(
            "schedules.png",
            "Population Based Training: each member's coefficient vs epoch (its lineage: a "
            "member that copied a donor continues the donor's schedule)",
            schedule_figure(series),
        )
        notes.extend(f"schedule {line}" for line in schedule_lines(series))


def write_report(run_dir: RunDir, study: Any, records: Sequence[Record], total_trials: int) -> Any:
    """Write the figures, ``summary.md`` and ``report.html`` of ``study``'s ``records`` into
    ``run_dir``; returns the HTML path."""
    summary = summarize(records)
    columns = table_columns(summary)
    comparisons, baseline = _comparisons(study, records)
    collapsed = {c.point for c in comparisons if c.collapsed}
    rendered: list[Figure] = []

    def add(name: str, caption: str, figure: Any, vector: bool = True) -> None:
        """Save the PNG; the HTML gets the SVG (hover values) unless ``vector`` is False
        (pictures such as filter grids, which would be hundreds of embedded PNG tiles)."""
        data = figures.png(figure)
        atomic_write(run_dir.output(name), lambda f: f.write(data))
        drawing = figures.svg(figure) if vector else None
        rendered.append(Figure(name, caption, data, drawing, figures.axis_labels(figure)))

    trained = [r for r in records if not r.get("diverged")]  # figures show trained models
    notes: list[str] = []
    if trained:
        recorded = {k for row in summary for k in row["metrics"]}
        add(
            "results.png",
            "Results per configuration (mean ± std over seeds)"
            + ("; ◀ marks a collapsed configuration, off the fitted axis" if collapsed else ""),
            figures.results_figure(summary, pick(recorded, "bar", 3), collapsed),
        )
        # pruned trials' curves are drawn together, in the search's pruning figure
        curve_data = curves([r for r in trained if not r.get("pruned")])
        if curve_data:
            held_out = held_out_split(study.example_points[0].config.data)
            pruned = any(r.get("pruned") for r in trained)
            add(
                "learning_curves.png",
                f"Training vs {held_out} loss: the overfitting picture"
                + ("; trials that ran to the end (pruned: the pruning figure)" if pruned else ""),
                figures.learning_curves_figure(curve_data, held_out=held_out),
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
                "Calibration: points on the diagonal are calibrated; the numbers are the test "
                "samples in each bin",
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
        examples = study.example_points
        image = examples[0].config.data.dataset.image if examples else None
        if image is not None:
            from reglab.autoencoders import plot_filters

            for point, (label, weight) in _filters(run_dir, trained, notes).items():
                add(
                    f"filters_{point}.png",
                    f"Encoder filters (first seed): {label}",
                    plot_filters(weight[:64], image[1:], ncols=16, title=label),
                    vector=False,
                )
        _add_schedules(trained, add, notes)  # Population Based Training's members
        series = coefficient_series(summary)
        if series:
            keys = {k for s in series.values() for k in s["metrics"]}
            base_row = next((r for r in summary if r["point"] == baseline), None)
            add(
                "coefficients.png",
                "Metrics vs swept coefficient (log axis; mean over seeds, ± std as error bars"
                + ("; dashed: the baseline" if base_row else "")
                + ")",
                figures.coefficients_figure(
                    series,
                    {k: metric(k) for k in keys},
                    base_row["metrics"] if base_row else None,
                ),
            )
        for name, caption, figure in pareto_figures(study, trained):  # several objectives
            add(name, caption, figure)
    searched = search_views(study, records)  # stages, pruned curves: none for a grid
    if trained:
        for name, caption, figure in searched.figures:
            add(name, caption, figure)
    title = f"reglab study: {study.name}"
    diverged = len(records) - len(trained)
    cut = sum(1 for r in trained if r.get("pruned"))  # trained, stopped early
    status = (
        f"{len(trained) - cut} of {total_trials} trials complete"
        + (f", {cut} pruned" if cut else "")
        + (f", {diverged} diverged." if diverged else ".")
    )
    finished = choosable(summary, records)  # a pruned trial is never the choice
    if len(finished) > 1:  # the choice, on validation only (reglab.lab.sweep.objective)
        front = front_sentence(study, trained)  # several objectives choose no one point
        status += " " + (front or choice_line(finished, study_objective(study)))
    status = " ".join([status, *searched.status])
    recorded = {k for row in summary for k in row["metrics"]}
    deciding = deciding_metrics(recorded)
    label = next((c.label for c in comparisons if c.point == baseline), None)
    page = Page(
        title,
        study.description,
        status,
        summary,
        columns,
        stopping_rows(summary),
        rendered,
        notes,
        comparisons,
        label,
        deciding,
        glossary([*deciding, *columns, *pick(recorded & {"stack_seconds", "stack_size"}, "table")]),
        " ".join(filter(None, [describe_time(training_time(records)), *searched.lines])),
    )
    atomic_write_text(run_dir.output("summary.md"), markdown_page(page))
    return atomic_write_text(run_dir.output("report.html"), html_page(page))
