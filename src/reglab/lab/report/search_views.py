"""The report's views of a searched run (``[search] method`` other than ``"grid"``).

Two views, each a pure function of the trial records
(:meth:`~reglab.lab.sweep.search.SearchSweep.results`: every record carries its ``stage``
and whether it was ``pruned``) and a renderer:

* **Stages** (coarse-to-fine): the objective (the validation metric the search chooses on)
  against each log-scaled coefficient, one marker and colour per stage, mean over seeds with
  the seed spread (sample std) as error bars, and the chosen value marked — the same choice
  the run printed (:func:`reglab.lab.sweep.conclusion.choose`). Where the entry has more
  than one axis, each panel holds the points that share the chosen point's other settings.
* **Pruning** (any ``pruner``): every trial's validation curve, pruned trials dashed and
  ending at the epoch they were stopped (×), and the epochs (and seconds) pruning saved.
  Seconds saved are estimated: each pruned trial's epochs not trained times its own
  measured mean epoch time.

:func:`search_views` puts them together for :func:`~reglab.lab.report.write_report`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reglab.lab.metrics import Metric, metric
from reglab.lab.report.figures import _figure, _tip, _unit, log_scale, styled
from reglab.lab.search.axes import SearchSpace
from reglab.lab.sweep.conclusion import choose, evidence_lines
from reglab.lab.sweep.objective import study_objective

__all__ = [
    "SearchViews",
    "pruning_curves",
    "pruning_figure",
    "pruning_line",
    "search_views",
    "stage_series",
    "stages_figure",
]

Record = dict[str, Any]

#: One (marker, colour) per coarse-to-fine stage.
_STAGE_STYLE = (("o", "tab:blue"), ("s", "tab:orange"), ("^", "tab:green"), ("D", "tab:purple"))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _short(name: str) -> str:
    return name.split(".")[-1]


# -- stages ----------------------------------------------------------------------------------


def stage_series(
    records: Sequence[Record], space: SearchSpace, key: str, maximize: bool = True
) -> dict[str, Any] | None:
    """The stages view's numbers: ``{"key", "chosen": params, "chosen_stats": (mean, std,
    n), "axes": [{"param", "stages": {stage: {"x", "mean", "std", "n"}}}], "results":
    [(params, per-seed values)]}``, one axis per
    ``{log = [a, b]}`` axis of ``space``, x sorted in each stage; None without two staged
    points measuring ``key``.

    Counted: finished trials (not pruned, not diverged) that record a ``stage`` and a finite
    ``key``; a point's seeds are grouped by its settings, in the stage that first measured
    it. The chosen point is the one with the best mean (``maximize``), ties to the smaller
    coefficients: :func:`~reglab.lab.sweep.conclusion.choose`, as the run printed it. With
    several axes, an axis's panel holds the points that share the chosen point's other
    settings.

    >>> from reglab.lab.search.axes import find_axes
    >>> space = find_axes({"l2": {"log": [1e-4, 1e-1]}})
    >>> r = [{"stage": s, "params": {"l2": x}, "metrics": {"val_acc": v}}
    ...      for s, x, v in [(1, 1e-3, .5), (1, 1e-3, 1.), (1, 1e-2, .5), (2, 3e-3, .9)]]
    >>> s = stage_series(r, space, "val_acc")
    >>> (axis,) = s["axes"]  # one log axis
    >>> s["chosen"], axis["stages"].get(1).get("mean")
    ({'l2': 0.003}, [0.75, 0.5])
    """
    measured: dict[str, tuple[dict[str, Any], int, list[float]]] = {}
    for r in records:
        value = (r.get("metrics") or {}).get(key)
        if r.get("stage") is None or r.get("pruned") or r.get("diverged") or not _finite(value):
            continue
        params = dict(r["params"])
        slot = measured.setdefault(json.dumps(params, sort_keys=True), (params, r["stage"], []))
        slot[2].append(float(value))
    logs = [a.name for a in space.axes if a.kind == "log"]
    if len(measured) < 2 or not logs:
        return None
    sign = 1.0 if maximize else -1.0
    results = [(p, [sign * v for v in values]) for p, _, values in measured.values()]
    best, _ = choose(space, results)  # type: ignore[misc]
    chosen_values = next(v for p, _, v in measured.values() if p == best)
    axes = []
    for name in logs:
        others = [n for n in best if n != name]
        stages: dict[int, dict[str, list[float]]] = {}
        for params, stage, values in measured.values():
            if any(params[o] != best[o] for o in others):
                continue
            s = stages.setdefault(int(stage), {"x": [], "mean": [], "std": [], "n": []})
            s["x"].append(float(params[name]))
            s["mean"].append(statistics.fmean(values))
            s["std"].append(statistics.stdev(values) if len(values) > 1 else 0.0)
            s["n"].append(len(values))
        for s in stages.values():  # sort each stage by x
            order = sorted(range(len(s["x"])), key=s["x"].__getitem__)
            for k in s:
                s[k] = [s[k][i] for i in order]
        axes.append({"param": name, "stages": dict(sorted(stages.items()))})
    stats = (
        statistics.fmean(chosen_values),
        statistics.stdev(chosen_values) if len(chosen_values) > 1 else 0.0,
        len(chosen_values),
    )
    measured_points = [(p, values) for p, _, values in measured.values()]
    return {
        "key": key,
        "chosen": best,
        "chosen_stats": stats,
        "axes": axes,
        "results": measured_points,
    }


def _collapsed(m: Metric, values: Sequence[float], best: float) -> list[bool]:
    """Accuracy-like points below half the best (a network at chance): drawn at the axis
    edge, so they do not stretch it over the differences the search is about."""
    if m.scale != 100 or m.better != "max" or not math.isfinite(best):
        return [False] * len(values)
    return [v < best / 2 for v in values]


def _any_collapsed(series: Mapping[str, Any], m: Metric) -> bool:
    best = m.scale * series["chosen_stats"][0]
    means = [m.scale * v for a in series["axes"] for s in a["stages"].values() for v in s["mean"]]
    return any(_collapsed(m, means, best))


@styled
def stages_figure(series: Mapping[str, Any], m: Metric, entry: str = "") -> Any:
    """One panel per coefficient: ``m`` (mean ± std over seeds) against the coefficient on
    a log axis, one marker and colour per stage; the chosen value marked by a red star and a
    dotted line. A collapsed point (accuracy below half the best) is a ▼ at the bottom edge
    with its value written next to it."""
    panels = series["axes"]
    fig = _figure(figsize=(4.6 * len(panels), 3.4))
    chosen = series["chosen"]
    mu_c, sd_c, n_c = series["chosen_stats"]
    best = m.scale * mu_c
    unit = _unit(m)
    for j, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        name = _short(panel["param"])
        kept: list[float] = []
        low_edge: list[tuple[float, float, int, str]] = []
        for stage, s in panel["stages"].items():
            marker, colour = _STAGE_STYLE[(stage - 1) % len(_STAGE_STYLE)]
            means = [m.scale * v for v in s["mean"]]
            stds = [m.scale * v for v in s["std"]]
            drop = _collapsed(m, means, best)
            xs = [x for x, d in zip(s["x"], drop, strict=True) if not d]
            ys = [y for y, d in zip(means, drop, strict=True) if not d]
            es = [e for e, d in zip(stds, drop, strict=True) if not d]
            label = f"stage {stage} ({len(s['x'])} point{'s' if len(s['x']) != 1 else ''})"
            ax.plot(xs, ys, color=colour, lw=0.8, alpha=0.6)
            for i, (x, y, e) in enumerate(zip(xs, ys, es, strict=True)):
                bars = ax.errorbar(
                    [x], [y], yerr=[e], fmt=marker, color=colour, capsize=3, ms=5,
                    label=label if i == 0 else None,
                )  # fmt: skip
                n = s["n"][s["x"].index(x)]
                _tip(
                    fig,
                    bars.lines[0],
                    f"stage {stage}: {name}={x:.3g}: {m.title} {y:.{m.decimals}f} ± "
                    f"{e:.{m.decimals}f}{unit} over {n} seed{'s' if n != 1 else ''}",
                )
                kept += [y - e, y + e]
            for x, y, d in zip(s["x"], means, drop, strict=True):
                if d:
                    low_edge.append((x, y, stage, colour))
        if kept:
            lo, hi = min(kept), max(kept)
            span = hi - lo or max(abs(hi), 1.0) * 0.1
            ax.set_ylim(lo - 0.25 * span, hi + 0.15 * span)
        bottom = ax.get_ylim()[0]
        for x, y, stage, colour in low_edge:
            (dot,) = ax.plot([x], [bottom], marker="v", color=colour, ms=7, clip_on=False)
            ax.annotate(
                f"{y:.{m.decimals}f}", (x, bottom), xytext=(0, 6), textcoords="offset points",
                ha="center", va="bottom", fontsize=6, color=colour,
            )  # fmt: skip
            _tip(
                fig,
                dot,
                f"stage {stage}: {name}={x:.3g}: {m.title} {y:.{m.decimals}f}{unit} "
                "(collapsed: below half the best; off the fitted axis)",
            )
        x_c = float(chosen[panel["param"]])
        ax.axvline(x_c, color="tab:red", ls=":", lw=1)
        (star,) = ax.plot(
            [x_c], [best], marker="*", ms=13, color="tab:red", ls="none", zorder=5,
            label=f"chosen: {name}={x_c:.3g}",
        )  # fmt: skip
        _tip(
            fig,
            star,
            f"chosen: {name}={x_c:.3g}: {m.title} {best:.{m.decimals}f} ± "
            f"{m.scale * sd_c:.{m.decimals}f}{unit} over {n_c} seed{'s' if n_c != 1 else ''}",
        )
        log_scale(ax.xaxis)
        ax.set_xlabel(f"{name} (log axis)", fontsize=8)
        ax.set_ylabel(f"{m.title}{unit}", fontsize=8)
        where = f"{entry}: " if entry else ""
        ax.set_title(f"{where}{m.title} vs {name}, by stage", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


# -- pruning ---------------------------------------------------------------------------------


def pruning_curves(records: Sequence[Record], key: str, epochs: int) -> dict[str, Any] | None:
    """The pruning view's numbers: ``{"curves": [{"label", "seed", "values", "pruned"}],
    "trials", "pruned", "epochs_trained", "epochs_full", "epochs_saved", "seconds_saved"}``;
    None without a trial that trained.

    Counted: every trial that was not diverged. ``values`` is ``key`` per epoch (None where
    not finite); a pruned trial's curve ends at the epoch it was stopped. ``epochs_saved``
    sums ``epochs - len(history)`` over pruned trials; ``seconds_saved`` multiplies each one's
    saved epochs by its own mean ``epoch_time`` (else its ``seconds`` over its epochs) — for a
    member of a stacked search, whose ``epoch_time`` is its stack's, that time over the
    stack's ``stack_size`` members (its share).

    >>> h = [{"val_acc": .5, "epoch_time": 2.0}]
    >>> r = [{"label": "a", "seed": 0, "history": h * 4, "pruned": False},
    ...      {"label": "b", "seed": 0, "history": h, "pruned": True}]
    >>> p = pruning_curves(r, "val_acc", epochs=4)
    >>> p["pruned"], p["trials"], p["epochs_saved"], p["seconds_saved"]
    (1, 2, 3, 6.0)
    >>> member = dict(r.pop(), metrics={"stack_size": 4.0})  # b, a member of a stack of 4
    >>> pruning_curves([*r, member], "val_acc", epochs=4)["seconds_saved"]
    1.5
    """
    out: dict[str, Any] = {"curves": [], "trials": 0, "pruned": 0, "epochs_trained": 0}
    saved = seconds = 0.0
    for r in records:
        history = r.get("history") or []
        if r.get("diverged") or not history:
            continue
        pruned = bool(r.get("pruned"))
        values = [float(h[key]) if _finite(h.get(key)) else None for h in history]
        out["curves"].append(
            {"label": r["label"], "seed": r.get("seed"), "values": values, "pruned": pruned}
        )
        out["trials"] += 1
        out["epochs_trained"] += len(history)
        if pruned:
            out["pruned"] += 1
            left = max(0, epochs - len(history))
            times = [float(h["epoch_time"]) for h in history if _finite(h.get("epoch_time"))]
            metrics = r.get("metrics") or {}
            if not times and _finite(metrics.get("seconds")):
                times = [float(metrics["seconds"]) / len(history)]
            if _finite(metrics.get("stack_size")) and metrics["stack_size"] >= 1:
                times = [t / float(metrics["stack_size"]) for t in times]  # its share
            saved += left
            seconds += left * statistics.fmean(times) if times else 0.0
    if not out["trials"]:
        return None
    out["epochs_full"] = out["trials"] * epochs
    out["epochs_saved"] = int(saved)
    out["seconds_saved"] = seconds
    return out


def pruning_line(p: Mapping[str, Any]) -> str:
    """``pruned 21 of 24 trials, saving 84 of 144 epochs (≈ 9.8 s)``."""
    return (
        f"Pruned {p['pruned']} of {p['trials']} trials, saving {p['epochs_saved']} of "
        f"{p['epochs_full']} epochs (≈ {p['seconds_saved']:.1f} s, at each pruned trial's "
        "measured time per epoch)."
    )


@styled
def pruning_figure(p: Mapping[str, Any], m: Metric, epochs: int) -> Any:
    """Every trial's ``m`` per epoch: trials that ran to the end solid (blue), pruned ones
    dashed (grey) and ending in a × at the epoch they were stopped."""
    fig = _figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    unit = _unit(m)
    seen = {True: False, False: False}
    for c in p["curves"]:
        pruned = c["pruned"]
        points = [(i + 1, m.scale * v) for i, v in enumerate(c["values"]) if v is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        count = p["pruned"] if pruned else p["trials"] - p["pruned"]
        label = None
        if not seen[pruned]:
            label = f"pruned ({count}), × where stopped" if pruned else f"ran to the end ({count})"
            seen[pruned] = True
        style = {"color": "grey", "ls": "--", "alpha": 0.7} if pruned else {"color": "tab:blue"}
        (line,) = ax.plot(xs, ys, lw=1, label=label, **style)
        seed = f" (seed {c['seed']})" if c.get("seed") is not None else ""
        state = f"pruned at epoch {len(c['values'])}" if pruned else f"{len(c['values'])} epochs"
        _tip(
            fig,
            line,
            f"{c['label']}{seed}: {state}, last {m.title} {ys[-1]:.{m.decimals}f}{unit}",
        )
        if pruned:
            ax.plot([xs[-1]], [ys[-1]], marker="x", color="tab:red", ms=6, ls="none")
    ax.set_xlim(0.5, epochs + 0.5)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(f"{m.title}{unit}", fontsize=8)
    ax.set_title(
        f"Validation curves of {p['trials']} trials: {p['pruned']} pruned "
        f"({p['epochs_saved']} of {p['epochs_full']} epochs not trained)",
        fontsize=8,
    )
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


# -- together --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchViews:
    """What a searched run adds to its report: ``figures`` as (file name, caption, figure),
    ``status`` (sentences after the choice: coarse-to-fine's evidence) and ``lines`` of text
    for the timing paragraph (what pruning saved)."""

    figures: list[tuple[str, str, Any]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def search_views(study: Any, records: Sequence[Record]) -> SearchViews:
    """The views of ``study``'s search (none for a grid): coarse-to-fine's stages figure;
    with a pruner, the pruned-curves figure and the line saying what pruning saved."""
    searched = getattr(study, "searched", None)
    if searched is None:
        return SearchViews()
    settings = study.search
    objective = study_objective(study)
    m = metric(objective.key)
    views = SearchViews()
    if settings.method == "coarse-to-fine":
        maximize = objective.direction == "maximize"
        series = stage_series(records, searched.space, objective.key, maximize)
        if series is not None:
            stages = sorted({s for a in series["axes"] for s in a["stages"]})
            chosen = ", ".join(
                f"{_short(k)}={v:.3g}" if _finite(v) else f"{_short(k)}={v}"
                for k, v in series["chosen"].items()
            )
            views.figures.append(
                (
                    "search_stages.png",
                    f"Coarse-to-fine: {m.title} vs coefficient (log axis) in stages "
                    f"{', '.join(map(str, stages))}; mean over seeds, ± std as error bars; "
                    f"★ the chosen value ({chosen})"
                    + (
                        "; ▼ at the bottom edge: a collapsed value (below half the best), "
                        "written out"
                        if _any_collapsed(series, m)
                        else ""
                    ),
                    stages_figure(series, m, searched.name),
                )
            )
            sign = 1.0 if maximize else -1.0  # evidence_lines reads the search's signs
            signed = [(p, [sign * v for v in values]) for p, values in series["results"]]
            evidence = evidence_lines(searched.space, signed, series["chosen"], objective.key)
            views.status.append(
                "Evidence (chosen vs runner-up, mean ± std over seeds): "
                + "; ".join(e.strip() for e in evidence)
                + "."
            )
    if settings.pruner != "none":
        epochs = searched.epochs
        p = pruning_curves(records, objective.key, epochs)
        if p is not None:
            views.figures.append(
                (
                    "search_pruning.png",
                    f"Pruning ({settings.pruner}): {m.title} per epoch of every trial; pruned "
                    "trials dashed, ending (×) at the epoch they were stopped",
                    pruning_figure(p, m, epochs),
                )
            )
            views.lines.append(pruning_line(p))
    return views
