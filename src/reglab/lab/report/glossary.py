"""The report's glossary: every column it shows, defined once, from the metric registry
(:data:`reglab.lab.metrics.METRICS` and :data:`~reglab.lab.metrics.DESCRIPTIONS`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reglab.lab.metrics import Metric, describe

__all__ = ["FIXED", "Entry", "glossary"]


@dataclass(frozen=True)
class Entry:
    """One glossary line: the column ``header``, its longer ``title``, the ``unit`` it is
    shown in and what it measures."""

    key: str
    header: str
    title: str
    unit: str
    description: str


#: Columns that are not metrics.
FIXED = (
    Entry(
        "config",
        "config",
        "configuration",
        "",
        "The grid point: its entry's name and swept values.",
    ),
    Entry(
        "settings",
        "settings",
        "settings in words",
        "",
        "What the configuration adds to the study's model and training: its rules "
        "(penalty or constraint, coefficients, the modules they apply to), techniques and "
        "changed settings.",
    ),
    Entry(
        "seeds",
        "seeds",
        "seeds",
        "",
        "Seeds trained to the end (trained / run when some diverged).",
    ),
    Entry(
        "verdict",
        "verdict",
        "verdict",
        "",
        "better / worse / no clear change, from the headline metric's paired change against "
        "the baseline (clear: more than two standard errors from 0 over at least two seeds), "
        "then the other clear changes.",
    ),
    Entry(
        "delta",
        "Δ",
        "change against the baseline",
        "",
        "Mean ± sample std over seeds of (configuration − baseline) for the same seed; percent "
        "metrics in percentage points (pts). Bold: a clear change.",
    ),
)


def unit(m: Metric) -> str:
    """The unit a metric is shown in: ``%`` for fractions shown in percent, else ""."""
    if m.scale == 100:
        return "pts" if m.header.endswith("pts") else "%"
    return "s" if m.key.endswith("seconds") else ""


def glossary(columns: Sequence[Metric], fixed: bool = True) -> list[Entry]:
    """An entry per column (the fixed ones first when ``fixed``), each metric once."""
    seen: set[str] = set()
    out = list(FIXED) if fixed else []
    for m in columns:
        if m.key in seen:
            continue
        seen.add(m.key)
        out.append(Entry(m.key, m.header, m.title, unit(m), describe(m.key) or m.title))
    return out
