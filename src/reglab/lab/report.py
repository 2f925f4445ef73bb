"""Reports: pure functions compute the numbers (tested); renderers draw and write them."""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reglab._io import atomic_write, atomic_write_text

__all__ = [
    "COLUMNS",
    "coefficient_series",
    "curves",
    "ensemble_curve",
    "reliability",
    "render_report",
    "summarize",
    "table_columns",
    "weight_histograms",
    "write_report",
]

#: Metrics shown in tables: (key, header, scale, decimals).
COLUMNS = (
    ("train_acc", "train %", 100, 2),
    ("test_acc", "test %", 100, 2),
    ("gap", "gap pts", 100, 2),
    ("test_loss", "test NLL", 1, 3),
    ("test_ece", "ECE %", 100, 2),
    ("test_ece_ts", "ECE temp-scaled %", 100, 2),
    ("temperature", "fitted T", 1, 2),
    ("test_acc_mc", "MC-dropout test %", 100, 2),
    ("parity_acc", "parity test %", 100, 2),
    ("probe_test_acc", "probe test %", 100, 2),
    ("probe_raw_acc", "raw-pixel probe %", 100, 2),
    ("mean_activation", "mean act.", 1, 3),
    ("train_ppl", "train ppl", 1, 1),
    ("valid_ppl", "valid ppl", 1, 1),
    ("test_ppl", "test ppl", 1, 1),
    ("act_sq", "E[h²]", 1, 5),
    ("act_diff_sq", "E[Δh²]", 1, 6),
    ("train_mse", "train MSE", 1, 4),
    ("test_mse", "test MSE", 1, 4),
    ("equiv_l2", "equiv. L2", 1, 4),
    ("ridge_gap", "off ridge path", 1, 5),
    ("pinv_gap", "from pinv", 1, 4),
    ("mean_member_acc", "member %", 100, 2),
    ("members", "k", 1, 0),
    ("ensemble_mse", "ens. MSE", 1, 4),
    ("predicted_mse", "v/k+(k-1)c/k", 1, 4),
    ("test_recon", "recon", 1, 3),
    ("pca_recon", "PCA recon", 1, 3),
    ("max_angle", "max angle °", 1, 2),
    ("fvu", "FVU", 1, 3),
    ("l0", "L0", 1, 1),
    ("dead_fraction", "dead %", 100, 1),
    ("zero_frac", "zeros %", 100, 1),
    ("weight_norm", "‖W‖₂", 1, 1),
    ("max_unit_norm", "max unit ‖w‖", 1, 2),
    ("weight_small_frac", "w≈0 %", 100, 1),  # |w| < 1e-3
    ("epochs_run", "epochs", 1, 0),
    ("seconds", "s", 1, 1),
)

Record = dict[str, Any]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per grid point (file order): label, entry, params, seeds, and ``(mean, std)`` over
    seeds of every metric."""
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
            },
        )
        row["seeds"].append(r["seed"])
        for k, v in r["metrics"].items():
            row["values"].setdefault(k, []).append(v)
    out = []
    for row in rows.values():
        values = row.pop("values")
        row["metrics"] = {k: _mean_std(v) for k, v in values.items()}
        out.append(row)
    return out


def curves(records: Sequence[Record]) -> dict[str, dict[str, list[float]]]:
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
                key: [statistics.fmean(h[i][key] for h in histories) for i in range(n)]
                for key in ("loss", "val_loss")
                if all(key in h[0] for h in histories if h)
            },
        }
    return out


_SWEEP_METRICS = (
    "test_ppl",
    "test_mse",
    "train_mse",
    "pinv_gap",
    "test_acc",
    "gap",
    "test_recon",
    "fvu",
    "zero_frac",
    "l0",
    "ensemble_mse",
)


def coefficient_series(
    summary: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """For each grid entry that sweeps exactly one numeric parameter over >= 2 values:
    ``{"param": name, "x": [...], metric: {"mean": [...], "std": [...]}}`` sorted by x.
    ``metrics`` defaults to the first three recorded among test accuracy, gap, reconstruction
    error, FVU, exact-zero fraction, L0 and ensemble MSE."""
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
        chosen = list(metrics or [m for m in _SWEEP_METRICS if m in rows[0]["metrics"]][:3])
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
    kernels: dict[str, Sequence[Any]], bins: int = 60
) -> dict[str, dict[str, list[float]]]:
    """Per label, a histogram of all kernel entries (arrays/tensors) over one shared range
    symmetric around 0: ``{"edges": [...], "counts": [...]}``."""
    import numpy as np

    flat = {
        k: np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in ts])
        for k, ts in kernels.items()
        if ts
    }
    if not flat:
        return {}
    limit = max(float(np.abs(v).max()) for v in flat.values()) or 1.0
    edges = np.linspace(-limit, limit, bins + 1)
    return {
        k: {"edges": edges.tolist(), "counts": np.histogram(v, edges)[0].astype(float).tolist()}
        for k, v in flat.items()
    }


def _kernels_from_checkpoints(folder: Path, records: Sequence[Record]) -> dict[str, list[Any]]:
    """First seed's kernels (2-D+ ``*weight`` tensors) of each point, from ``model.safetensors``."""
    from safetensors.numpy import load_file

    out: dict[str, list[Any]] = {}
    for r in records:
        if r["label"] in out:
            continue
        path = folder / "trials" / r["key"] / "model.safetensors"
        if path.is_file():
            tensors = load_file(str(path))
            out[r["label"]] = [
                t for n, t in tensors.items() if n.endswith("weight") and t.ndim >= 2
            ]
    return out


# -- rendering -------------------------------------------------------------------------------
def _figure(**kwargs: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Any, path: Path) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return data


def _learning_curves(curve_data: dict[str, dict[str, Any]]) -> Any:
    n = len(curve_data)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(3.2 * ncols, 2.4 * nrows))
    for i, c in enumerate(curve_data.values()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        if "loss" in c:
            ax.plot(range(1, len(c["loss"]) + 1), c["loss"], label="train")
        if "val_loss" in c:
            ax.plot(range(1, len(c["val_loss"]) + 1), c["val_loss"], label="held-out")
        ax.set_title(c["label"], fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Learning curves (data loss, mean over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def _coefficients(series: dict[str, dict[str, Any]]) -> Any:
    fig = _figure(figsize=(10, 2.8 * len(series)))
    for i, (entry, s) in enumerate(series.items()):
        metrics = s["metrics"]
        for j, m in enumerate(metrics):
            ax = fig.add_subplot(len(series), 3, i * 3 + j + 1)
            ax.errorbar(s["x"], s[m]["mean"], yerr=s[m]["std"], marker="o", capsize=3)
            if min(s["x"]) > 0:
                ax.set_xscale("log")
            ax.set_xlabel(s["param"].split(".")[-1], fontsize=8)
            ax.set_title(f"{entry}: {m}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


#: Bar-chart panels: the first three metrics some trial recorded.
_BAR_METRICS = (
    ("test_acc", "test accuracy"),
    ("gap", "train − test"),
    ("zero_frac", "exact-zero hidden activations"),
    ("test_recon", "test reconstruction error"),
    ("test_mse", "test MSE"),
    ("train_mse", "train MSE"),
    ("weight_norm", "‖W‖₂"),
    ("valid_ppl", "validation perplexity"),
    ("act_sq", "E[h²] (AR)"),
    ("act_diff_sq", "E[Δh²] (TAR)"),
)


def _bars(summary: Sequence[dict[str, Any]]) -> Any:
    fig = _figure(figsize=(10, 3))
    labels = [r["label"] for r in summary]
    recorded = {k for r in summary for k in r["metrics"]}
    panels = [p for p in _BAR_METRICS if p[0] in recorded][:3]
    for j, (m, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, j + 1)
        means = [r["metrics"].get(m, (math.nan, 0))[0] for r in summary]
        stds = [r["metrics"].get(m, (math.nan, 0))[1] for r in summary]
        ax.barh(range(len(labels)), means, xerr=stds, capsize=2)
        ax.set_yticks(range(len(labels)), labels if j == 0 else [""] * len(labels), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _grid_axes(fig: Any, n: int, ncols: int = 4) -> list[Any]:
    nrows = math.ceil(n / ncols)
    return [fig.add_subplot(nrows, min(ncols, n), i + 1) for i in range(n)]


def _reliability_figure(data: dict[str, dict[str, Any]]) -> Any:
    n = len(data)
    fig = _figure(figsize=(2.6 * min(4, n), 2.5 * math.ceil(n / 4)))
    for ax, d in zip(_grid_axes(fig, n), data.values(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(d["confidence"], d["accuracy"], marker="o", ms=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(d["label"], fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Reliability diagrams (test set, 15 bins): accuracy vs confidence", fontsize=9)
    fig.tight_layout()
    return fig


def _histogram_figure(data: dict[str, dict[str, list[float]]]) -> Any:
    n = len(data)
    fig = _figure(figsize=(2.6 * min(4, n), 2.2 * math.ceil(n / 4)))
    for ax, (label, h) in zip(_grid_axes(fig, n), data.items(), strict=True):
        edges = h["edges"]
        ax.stairs(h["counts"], edges, fill=True)
        ax.set_yscale("log")
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Kernel weight histograms (first seed; log count)", fontsize=9)
    fig.tight_layout()
    return fig


def _ensemble_figure(curve: dict[str, list[float]]) -> Any:
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
    ax.plot(curve["k"], curve["test_acc"], marker="o", label="ensemble")
    ax.plot(curve["k"], curve["mean_member_acc"], marker="s", label="mean member")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("members k", fontsize=8)
    ax.set_title("test accuracy", fontsize=8)
    ax.legend(fontsize=7)
    for a in fig.axes:
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _filters_from_checkpoints(folder: Path, records: Sequence[Record]) -> dict[str, Any]:
    """First seed's encoder filters (``encoder.0.weight``) of each autoencoder point."""
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for r in records:
        path = folder / "trials" / r["key"] / "model.safetensors"
        if r["point"] in out or not path.is_file():
            continue
        weights = load_file(str(path))
        if "encoder.0.weight" in weights:
            out[r["point"]] = (r["label"], weights["encoder.0.weight"])
    return out


def _fmt(metric: tuple[float, float], scale: float, decimals: int) -> str:
    mean, std = metric
    if math.isnan(mean):
        return "–"
    return f"{scale * mean:.{decimals}f} ± {scale * std:.{decimals}f}"


def table_columns(summary: Sequence[dict[str, Any]]) -> list[tuple[str, str, float, int]]:
    """The ``COLUMNS`` that at least one row recorded."""
    recorded = {k for row in summary for k in row["metrics"]}
    return [c for c in COLUMNS if c[0] in recorded] or list(COLUMNS)


def stopping_rows(summary: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Post-hoc stopping results (``stop/<criterion>`` metrics): one row per grid point and
    criterion with the stop epoch and the test accuracy of the last and of the best weights."""
    rows = []
    for row in summary:
        metrics = row["metrics"]
        for key in (k for k in metrics if k.startswith("stop/")):
            name = key.removeprefix("stop/")
            rows.append(
                [
                    row["label"],
                    name,
                    _fmt(metrics[key], 1, 1),
                    _fmt(metrics[f"test_acc_last/{name}"], 100, 2),
                    _fmt(metrics[f"test_acc_best/{name}"], 100, 2),
                ]
            )
    return rows


_STOPPING_HEADERS = ("config", "criterion", "stop epoch", "test % (last)", "test % (best)")


def markdown_table(
    summary: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, float, int]] = COLUMNS
) -> str:
    header = "| config | seeds | " + " | ".join(h for _, h, _, _ in columns) + " |"
    rule = "|---|---|" + "---|" * len(columns)
    lines = [header, rule]
    for row in summary:
        cells = [_fmt(row["metrics"].get(k, (math.nan, math.nan)), s, d) for k, _, s, d in columns]
        lines.append(f"| {row['label']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    run_dir_path: str | Path, study: Any, records: Sequence[Record], total_trials: int
) -> Path:
    """``render_report`` with a study's title, description and image shape."""
    from reglab.lab.datasets import image_shape

    return render_report(
        run_dir_path,
        f"reglab study: {study.name}",
        study.description,
        records,
        total_trials,
        image_shape(study),
    )


def render_report(
    folder: str | Path,
    title: str,
    description: str,
    records: Sequence[Record],
    total_trials: int,
    image_shape: tuple[int, int] | None = None,
) -> Path:
    """Write PNGs, ``summary.md`` and a self-contained ``report.html`` (images embedded as
    base64) into ``folder``; returns the HTML path. ``image_shape`` (h, w) enables filter
    pictures of autoencoder studies."""
    folder = Path(folder)
    summary = summarize(records)
    columns = table_columns(summary)
    images: list[tuple[str, str, bytes]] = []

    def add(name: str, caption: str, figure: Any) -> None:
        images.append((name, caption, _save(figure, folder / name)))

    if records:
        add("results.png", "Results per configuration (mean ± std over seeds)", _bars(summary))
        curve_data = curves(records)
        if curve_data:
            add(
                "learning_curves.png",
                "Training vs held-out loss: the overfitting picture",
                _learning_curves(curve_data),
            )
        histograms = weight_histograms(_kernels_from_checkpoints(folder, records))
        if histograms:
            add(
                "weights.png",
                "Weight histograms: L1 piles weights at zero, L2 shrinks them densely",
                _histogram_figure(histograms),
            )
        bins = reliability(records)
        if bins:
            add(
                "reliability.png",
                "Calibration: points on the diagonal are calibrated",
                _reliability_figure(bins),
            )
        curve = ensemble_curve(summary)
        if curve:
            add(
                "ensemble.png",
                "Ensemble error vs number of members k: measured, predicted by "
                "v/k + (k-1)c/k, and the mean member",
                _ensemble_figure(curve),
            )
        if image_shape is not None:
            from reglab.autoencoders import plot_filters

            for point, (label, weight) in _filters_from_checkpoints(folder, records).items():
                add(
                    f"filters_{point}.png",
                    f"Encoder filters (first seed): {label}",
                    plot_filters(weight[:64], image_shape, ncols=16, title=label),
                )
        series = coefficient_series(summary)
        if series:
            add(
                "coefficients.png",
                "Metrics vs swept coefficient (log axis, seed spread as error bars)",
                _coefficients(series),
            )
    table = markdown_table(summary, columns)
    stopping = stopping_rows(summary)
    if stopping:
        table += (
            "\n\nEarly-stopping criteria replayed on the logged runs:\n\n"
            + f"| {' | '.join(_STOPPING_HEADERS)} |\n|"
            + "---|" * len(_STOPPING_HEADERS)
            + "".join(f"\n| {' | '.join(cells)} |" for cells in stopping)
        )
    status = f"{len(records)} of {total_trials} trials complete."
    atomic_write_text(
        folder / "summary.md",
        f"# {title}\n\n{description.strip()}\n\n{status}\n\n"
        f"{table}\n\n" + "".join(f"![{c}]({n})\n\n" for n, c, _ in images),
    )
    rows = "".join(
        "<tr><td>"
        + html.escape(r["label"])
        + f"</td><td>{len(r['seeds'])}</td>"
        + "".join(
            f"<td>{html.escape(_fmt(r['metrics'].get(k, (math.nan, math.nan)), s, d))}</td>"
            for k, _, s, d in columns
        )
        + "</tr>"
        for r in summary
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _, _ in columns)
    if stopping:
        rows += "</table><p>Early-stopping criteria replayed on the logged runs:</p><table><tr>"
        rows += "".join(f"<th>{html.escape(h)}</th>" for h in _STOPPING_HEADERS) + "</tr>"
        rows += "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in stopping
        )

    figures = "".join(
        f'<figure><img alt="{html.escape(c)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for _, c, data in images
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body><h1>{html.escape(title)}</h1>
<p>{html.escape(description.strip())}</p><p>{status}</p>
<table><tr><th>config</th><th>seeds</th>{head}</tr>{rows}</table>{figures}</body></html>
"""
    return atomic_write_text(folder / "report.html", page)
