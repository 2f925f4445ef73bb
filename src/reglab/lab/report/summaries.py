"""The numbers of a report, from trial records: pure functions (unit-tested), no drawing.

A *record* is one completed trial as :meth:`reglab.lab.Sweep.results` returns it (key, point,
label, entry, seed, params, metrics, history, reliability). A *summary row* is one grid point:
its seeds and ``(mean, std)`` over seeds of every metric.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from reglab.lab.metrics import NONFINITE, Metric, format_value, pick

__all__ = [
    "coefficient_series",
    "curves",
    "ensemble_curve",
    "markdown_table",
    "reliability",
    "stopping_rows",
    "summarize",
    "table_columns",
    "table_rows",
    "weight_histograms",
]

#: A cell for a metric the configuration did not record: it does not apply (not 0).
NOT_APPLICABLE = "n/a"
#: Recorded per trial but reported once per stack (:func:`training_time`), not per row.
_PER_STACK = ("stack_seconds", "stack_size")

Record = dict[str, Any]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per grid point (file order): point, label, entry, params, seeds (those that
    trained to the end), ``(mean, std)`` over them (sample std) of every metric,
    ``diverged`` (``[(seed, reason)]``) and ``notes``: the seeds that diverged and the metrics
    that were not finite, in words (or "")."""
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        row = rows.setdefault(
            r["point"],
            {
                "point": r["point"],
                "label": r["label"],
                "entry": r["entry"],
                "params": r["params"],
                "seeds": [],
                "values": {},
                "diverged": [],
                "nonfinite": {},
            },
        )
        if r.get("diverged"):
            row["diverged"].append((r["seed"], r["diverged"]))
            continue
        row["seeds"].append(r["seed"])
        for k, v in r["metrics"].items():
            if k == NONFINITE:
                for name, kind in v.items():
                    row["nonfinite"].setdefault(name, []).append((r["seed"], kind))
            else:
                row["values"].setdefault(k, []).append(v)
    out = []
    for row in rows.values():
        values = row.pop("values")
        row["metrics"] = {k: _mean_std(v) for k, v in values.items()}
        row["notes"] = _notes(row["diverged"], row.pop("nonfinite"), len(row["seeds"]))
        out.append(row)
    return out


def _notes(
    diverged: list[tuple[int, str]], nonfinite: dict[str, list[tuple[int, str]]], trained: int
) -> str:
    notes = []
    if diverged:
        seeds = ", ".join(str(seed) for seed, _ in diverged)
        which = "" if not trained else f" (seed{'s' if len(diverged) > 1 else ''} {seeds})"
        notes.append(f"diverged{which}: {diverged[0][1]}")
    for name, seen in nonfinite.items():
        kinds = ", ".join(f"{kind} (seed {seed})" for seed, kind in seen)
        notes.append(f"{name} {kinds}")
    return "; ".join(notes)


def _number(value: float | None) -> float:
    return math.nan if value is None else value  # stored histories hold null for NaN / inf


def curves(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """Per grid point, the seed-mean per-epoch ``loss`` (training) and ``val_loss`` (held-out;
    the test set when the study has no validation split), truncated to the shortest run."""
    grouped: dict[str, list[list[dict[str, float]]]] = {}
    labels: dict[str, str] = {}
    for r in records:
        grouped.setdefault(r["point"], []).append(r["history"])
        labels[r["point"]] = r["label"]
    out = {}
    for point, histories in grouped.items():
        n = min(len(h) for h in histories)
        if n == 0:  # e.g. bagged ensembles: no per-epoch history
            continue
        out[point] = {
            "label": labels[point],
            **{
                key: [statistics.fmean(_number(h[i][key]) for h in histories) for i in range(n)]
                for key in ("loss", "val_loss")
                if all(key in h[0] for h in histories if h)
            },
        }
    return out


def coefficient_series(
    summary: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """For each grid entry that sweeps exactly one numeric parameter over >= 2 values:
    ``{"param": name, "x": [...], "metrics": [...], metric: {"mean", "std"}}`` sorted by x.
    ``metrics`` defaults to the first three the registry plots against a coefficient."""
    by_entry: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        by_entry.setdefault(row["entry"], []).append(row)
    out = {}
    for entry, rows in by_entry.items():
        params = rows[0]["params"]
        if len(rows) < 2 or len(params) != 1:
            continue
        (name,) = params
        if not all(isinstance(r["params"][name], (int, float)) for r in rows):
            continue
        chosen = list(metrics or [m.key for m in pick(rows[0]["metrics"], "sweep", 3)])
        rows = sorted(rows, key=lambda r: r["params"][name])
        series: dict[str, Any] = {
            "param": name,
            "x": [r["params"][name] for r in rows],
            "metrics": chosen,
        }
        for m in chosen:
            stats = [r["metrics"].get(m, (math.nan, math.nan)) for r in rows]
            series[m] = {"mean": [s[0] for s in stats], "std": [s[1] for s in stats]}
        out[entry] = series
    return out


def ensemble_curve(summary: Sequence[dict[str, Any]]) -> dict[str, list[float]] | None:
    """Ensemble rows sorted by member count k: measured ensemble MSE, the prediction
    ``v/k + (k−1)c/k``, the mean member MSE, and ensemble vs mean member accuracy."""
    rows = sorted(
        (r for r in summary if "members" in r["metrics"]), key=lambda r: r["metrics"]["members"][0]
    )
    if not rows:
        return None
    keys = ("ensemble_mse", "predicted_mse", "mean_member_mse", "test_acc", "mean_member_acc")
    out = {"k": [r["metrics"]["members"][0] for r in rows]}
    out.update({k: [r["metrics"][k][0] for r in rows] for k in keys})
    return out


def reliability(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """Per grid point, the test-set reliability bins pooled over seeds: ``count`` summed,
    ``confidence`` and ``accuracy`` count-weighted (NaN for empty bins)."""
    pooled: dict[str, dict[str, Any]] = {}
    for r in records:
        bins = r.get("reliability")
        if not bins:
            continue
        p = pooled.setdefault(
            r["point"],
            {
                "label": r["label"],
                "count": [0.0] * len(bins["count"]),
                "conf": [0.0] * len(bins["count"]),
                "acc": [0.0] * len(bins["count"]),
            },
        )
        for i, n in enumerate(bins["count"]):
            if n:
                p["count"][i] += n
                p["conf"][i] += n * bins["confidence"][i]
                p["acc"][i] += n * bins["accuracy"][i]
    out = {}
    for point, p in pooled.items():
        out[point] = {
            "label": p["label"],
            "count": p["count"],
            "confidence": [
                c / n if n else math.nan for c, n in zip(p["conf"], p["count"], strict=True)
            ],
            "accuracy": [
                a / n if n else math.nan for a, n in zip(p["acc"], p["count"], strict=True)
            ],
        }
    return out


def weight_histograms(
    kernels: Mapping[str, Sequence[Any]], bins: int = 60
) -> dict[str, dict[str, list[float]]]:
    """Per label, a histogram of all kernel entries (arrays/tensors) over one shared range
    symmetric around 0: ``{"edges": [...], "counts": [...]}`` (non-finite entries left out)."""
    import numpy as np

    flat = {
        k: np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in ts])
        for k, ts in kernels.items()
        if ts
    }
    flat = {k: v[np.isfinite(v)] for k, v in flat.items()}  # NaN / inf have no bin
    flat = {k: v for k, v in flat.items() if v.size}
    if not flat:
        return {}
    limit = max(float(np.abs(v).max()) for v in flat.values()) or 1.0
    edges = np.linspace(-limit, limit, bins + 1)
    return {
        k: {"edges": edges.tolist(), "counts": np.histogram(v, edges)[0].astype(float).tolist()}
        for k, v in flat.items()
    }


def table_columns(summary: Sequence[dict[str, Any]]) -> list[Metric]:
    """The registered metrics that at least one row recorded, in the registry's order (a
    stack's time and size are reported once per stack, by :func:`training_time`)."""
    recorded = {k for row in summary for k in row["metrics"]} - set(_PER_STACK)
    return pick(recorded, "table")


STOPPING_HEADERS = ("config", "criterion", "stop epoch", "test % (last)", "test % (best)")


def stopping_rows(summary: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Post-hoc stopping results (``stop/<criterion>`` metrics): one row per grid point and
    criterion with the stop epoch and the test accuracy of the last and of the best weights."""
    from reglab.lab.metrics import STOP_EPOCH, metric

    epochs, acc = STOP_EPOCH, metric("test_acc")
    rows = []
    for row in summary:
        metrics = row["metrics"]
        for key in (k for k in metrics if k.startswith("stop/")):
            name = key.removeprefix("stop/")
            rows.append(
                [
                    row["label"],
                    name,
                    format_value(epochs, *metrics[key]),
                    format_value(acc, *metrics[f"test_acc_last/{name}"]),
                    format_value(acc, *metrics[f"test_acc_best/{name}"]),
                ]
            )
    return rows


def markdown_table(
    summary: Sequence[dict[str, Any]], columns: Sequence[Metric] | None = None
) -> str:
    """The summary as a Markdown table (every registered metric unless ``columns``)."""
    from reglab.lab.metrics import METRICS

    columns = list(METRICS) if columns is None else list(columns)
    headers, rows = table_rows(summary, columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def table_rows(
    summary: Sequence[dict[str, Any]], columns: Sequence[Metric]
) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the results table: config, seeds (trained / run), the metrics,
    and a notes column when a row has notes (divergence, non-finite metrics)."""
    notes = any(row.get("notes") for row in summary)
    headers = ["config", "seeds", *(m.header for m in columns), *(["notes"] if notes else [])]
    rows = []
    for row in summary:
        # n/a: the configuration's trials do not record it; "–": not measured (diverged)
        cells = [
            format_value(m, *row["metrics"].get(m.key, (math.nan, math.nan)))
            if m.key in row["metrics"] or not row["seeds"]
            else NOT_APPLICABLE
            for m in columns
        ]
        rows.append(
            [
                row["label"],
                _seeds(row),
                *cells,
                *([row.get("notes", "")] if notes else []),
            ]
        )
    return headers, rows


def _seeds(row: dict[str, Any]) -> str:
    """How many seeds trained to the end, and of how many when some diverged."""
    trained, diverged = len(row["seeds"]), len(row.get("diverged", ()))
    return f"{trained}/{trained + diverged}" if diverged else str(trained)
