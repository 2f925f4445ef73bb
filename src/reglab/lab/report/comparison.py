"""Each configuration against the baseline, paired by seed: pure functions, no drawing.

The report's first screen answers "what did each regularizer do?". For every configuration
and every *deciding* metric (:data:`reglab.lab.metrics.DECIDING`: accuracy, gap, NLL / ECE,
sparsity, ‖W‖ — those the study recorded) it takes the seeds that both the configuration and
the baseline trained to the end, and the differences ``config[seed] − baseline[seed]``:
their mean ± sample standard deviation is the change (seed-to-seed variation that both share
cancels, so the interval is narrower than comparing two means).

A change is *clear* when at least two seeds were paired and the mean difference is more than
two standard errors (``|mean| > 2·std/√n``) from zero: a rule of thumb, not a test (with three
seeds a t-test would ask for 4.3 standard errors). The one-line verdict names the headline
metric's change and the other clear changes::

    better: test acc +0.9 ± 0.2 pts; zeros 26 → 86 %; ECE +3.4 ± 0.2 pts

The baseline is the point the study declares (``baseline = "name"``), else the one named
``none``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reglab.lab.metrics import DECIDING, METRICS, Metric, metric

__all__ = [
    "Comparison",
    "Delta",
    "compare",
    "deciding_metrics",
    "find_baseline",
    "format_delta",
    "is_collapsed",
    "paired_delta",
    "short_name",
    "verdict",
]

Record = dict[str, Any]

#: Names in verdicts, where a table header would read badly ("test % +0.9").
_SHORT = {
    "test_acc": "test acc",
    "val_acc": "val acc",
    "train_acc": "train acc",
    "test_loss": "NLL",
    "test_ece": "ECE",
    "zero_frac": "zeros",
    "weight_small_frac": "w≈0",
    "weight_norm": "‖W‖₂",
}
#: A configuration whose headline accuracy is below this share of the best one's collapsed.
COLLAPSE_SHARE = 0.5


def short_name(m: Metric) -> str:
    """The metric's name in a verdict: ``test acc``, ``zeros``, ``ECE``, else its header
    without a unit suffix."""
    return _SHORT.get(m.key, m.header.removesuffix(" %").removesuffix(" pts"))


@dataclass(frozen=True)
class Delta:
    """One metric of one configuration against the baseline, over ``n`` paired seeds:
    ``baseline`` and ``value`` are the means over those seeds, ``mean`` ± ``std`` the
    differences ``value[seed] − baseline[seed]`` (sample std; NaN for one seed)."""

    key: str
    baseline: float
    value: float
    mean: float
    std: float
    n: int

    @property
    def clear(self) -> bool:
        """At least two seeds and ``|mean|`` more than two standard errors from 0."""
        if self.n < 2 or not math.isfinite(self.mean):
            return False
        return abs(self.mean) > 2 * self.std / math.sqrt(self.n)

    @property
    def improved(self) -> bool | None:
        """Whether the change is for the better (None for a descriptive metric)."""
        better = metric(self.key).better
        if better is None:
            return None
        return self.mean > 0 if better == "max" else self.mean < 0


@dataclass(frozen=True)
class Comparison:
    """A configuration's row on the first screen."""

    point: str
    label: str
    settings: str
    seeds: int
    is_baseline: bool
    collapsed: bool
    deltas: dict[str, Delta] = field(default_factory=dict)
    verdict: str = ""


def paired_delta(
    key: str, baseline: Mapping[int, float | None], other: Mapping[int, float | None]
) -> Delta | None:
    """The change of ``key`` from ``baseline`` to ``other`` (``{seed: value}`` each) over the
    seeds both have a finite value for; None when they share none.

    >>> d = paired_delta("test_acc", {0: 0.90, 1: 0.92, 2: 0.91}, {0: 0.91, 1: 0.94, 2: 0.92})
    >>> round(d.mean, 4), round(d.std, 4), d.n, d.clear
    (0.0133, 0.0058, 3, True)
    """
    seeds = [
        s
        for s in baseline
        if s in other
        and _finite(baseline[s])
        and _finite(other[s])  # a diverged seed or a non-finite value pairs with nothing
    ]
    if not seeds:
        return None
    base = [float(baseline[s]) for s in seeds]  # type: ignore[arg-type]
    own = [float(other[s]) for s in seeds]  # type: ignore[arg-type]
    diffs = [o - b for o, b in zip(own, base, strict=True)]
    std = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
    return Delta(
        key, statistics.fmean(base), statistics.fmean(own), statistics.fmean(diffs), std, len(seeds)
    )


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def deciding_metrics(recorded: Sequence[str] | set[str]) -> list[Metric]:
    """The registered deciding metrics among ``recorded``, in :data:`DECIDING` order."""
    known = {m.key for m in METRICS}
    return [metric(k) for k in DECIDING if k in known and k in recorded]


def find_baseline(
    points: Sequence[tuple[str, str, str]], declared: str | None = None
) -> str | None:
    """The key of the baseline among ``points`` (``(key, label, entry)`` each): the one
    ``declared`` names (by key, label or a grid entry of one point), else the one whose label
    or entry is ``none``; None when there is no such point."""
    names = [declared] if declared else ["none"]
    for name in names:
        for key, label, _entry in points:
            if name in (key, label):
                return key
        matches = [key for key, _, entry in points if entry == name]
        if len(matches) == 1:
            return matches[0]
    return None


def is_collapsed(value: float, best: float) -> bool:
    """Whether a headline accuracy ``value`` collapsed: below :data:`COLLAPSE_SHARE` of the
    ``best`` configuration's (e.g. 10 % when the others reach 97 %)."""
    return math.isfinite(value) and math.isfinite(best) and value < COLLAPSE_SHARE * best


def format_delta(d: Delta) -> str:
    """``+0.9 ± 0.2 pts`` (percent metrics in percentage points), ``−3.1 ± 0.4`` otherwise;
    ``± ?`` for a single seed."""
    m = metric(d.key)
    spread = "?" if math.isnan(d.std) else f"{m.scale * d.std:.{m.decimals}f}"
    unit = " pts" if m.scale == 100 else ""
    return f"{m.scale * d.mean:+.{m.decimals}f} ± {spread}{unit}".replace("-", "−")


def _before_after(d: Delta) -> str:
    m = metric(d.key)
    digits = 0 if m.scale == 100 else m.decimals
    unit = " %" if m.scale == 100 else ""
    return f"{m.scale * d.baseline:.{digits}f} → {m.scale * d.value:.{digits}f}{unit}"


def verdict(deltas: Mapping[str, Delta], headline: str | None, collapsed: bool = False) -> str:
    """One line from the numbers: ``better`` / ``worse`` / ``no clear change`` (the headline
    metric's clear change; ``collapsed`` overrides), the headline's change, then the other
    clear changes, strongest first (at most two): metrics with a direction as a signed
    difference, descriptive ones (sparsity, ‖W‖) as ``before → after``."""
    head = deltas.get(headline) if headline else None
    if head is None:
        word = "not compared"
    elif collapsed:
        word = "collapsed"
    elif head.n < 2:
        word = "one seed, not judged"
    elif not head.clear:
        word = "no clear change"
    else:
        word = "better" if head.improved else "worse"
    parts = []
    if head is not None:
        parts.append(f"{short_name(metric(head.key))} {format_delta(head)}")
    others = [d for k, d in deltas.items() if k != headline and d.clear]
    others.sort(key=lambda d: -abs(d.mean) / (d.std or 1e-12))
    for d in others[:2]:
        name = short_name(metric(d.key))
        text = _before_after(d) if d.improved is None else format_delta(d)
        parts.append(f"{name} {text}")
    return f"{word}: " + "; ".join(parts) if parts else word


def _headline(keys: Sequence[str]) -> str | None:
    """The verdict's metric: the first deciding test-split metric with a direction."""
    for k in keys:
        if k.startswith("test_") and metric(k).better is not None:
            return k
    return next((k for k in keys if metric(k).better is not None), None)


def compare(
    records: Sequence[Record],
    baseline: str | None,
    settings: Mapping[str, str] | None = None,
) -> list[Comparison]:
    """One :class:`Comparison` per grid point of ``records`` (first-seen order): its settings
    (``settings[point]``), the paired changes of the deciding metrics against the
    ``baseline`` point (none when it is None or absent) and the verdict."""
    settings = settings or {}
    values: dict[str, dict[str, dict[int, Any]]] = {}
    labels: dict[str, str] = {}
    seeds: dict[str, int] = {}
    for r in records:
        labels.setdefault(r["point"], r["label"])
        per = values.setdefault(r["point"], {})
        seeds.setdefault(r["point"], 0)
        if r.get("diverged"):
            continue
        seeds[r["point"]] += 1
        for k, v in r["metrics"].items():
            if isinstance(v, (int, float)) or v is None:
                per.setdefault(k, {})[r["seed"]] = v
    recorded = {k for per in values.values() for k in per}
    keys = [m.key for m in deciding_metrics(recorded)]
    headline = _headline(keys)
    means = {
        p: statistics.fmean(v for v in per.get(headline, {}).values() if _finite(v))
        for p, per in values.items()
        if headline and any(_finite(v) for v in per.get(headline, {}).values())
    }
    best = max(means.values(), default=math.nan)
    shows_accuracy = headline is not None and metric(headline).scale == 100
    base = values.get(baseline or "")
    out = []
    for point, per in values.items():
        collapsed = shows_accuracy and is_collapsed(means.get(point, math.nan), best)
        deltas: dict[str, Delta] = {}
        if base is not None and point != baseline:
            for k in keys:
                d = paired_delta(k, base.get(k, {}), per.get(k, {}))
                if d is not None:
                    deltas[k] = d
        is_base = point == baseline
        line = "baseline" if is_base else ("no baseline" if base is None else "")
        if not seeds[point]:
            line = "diverged: no seed trained to the end"
        if not line:
            line = verdict(deltas, headline, collapsed)
        elif collapsed:
            line += " (collapsed)"
        out.append(
            Comparison(
                point,
                labels[point],
                settings.get(point, ""),
                seeds[point],
                is_base,
                collapsed,
                deltas,
                line,
            )
        )
    return out
