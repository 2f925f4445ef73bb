"""Population Based Training in the report: each member's coefficient schedule.

:func:`schedule_series` computes (a pure function of the records: a PBT member's record holds
its ``schedule``, axis -> ``{"boundaries": [epochs], "values": [...]}``); :func:`schedule_lines`
writes them as text and :func:`schedule_figure` draws coefficient vs epoch, one step line per
member, one panel per coefficient.

>>> records = [{"label": "m0", "history": [{}] * 6,
...             "schedule": {"l2": {"boundaries": [2], "values": [1e-3, 8e-4]}}}]
>>> schedule_series(records)["l2"]["m0"]
[(0, 0.001), (2, 0.0008), (6, 0.0008)]
>>> schedule_lines(schedule_series(records))
['l2, m0: 0.001 → 0.0008 (epoch 2)']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reglab.lab.report.figures import _figure, _tip, log_scale, styled

__all__ = ["schedule_figure", "schedule_lines", "schedule_series"]

Series = dict[str, dict[str, list[tuple[int, float]]]]


def schedule_series(records: Sequence[Mapping[str, Any]]) -> Series:
    """axis -> member label -> ``(epoch, value)`` points: the value from each epoch on, and
    the last value again at the member's last epoch (so the line spans its training). Records
    without a ``schedule`` (not PBT members) are left out."""
    series: Series = {}
    for r in records:
        for axis, s in (r.get("schedule") or {}).items():
            points = [(0, float(s["values"][0]))]
            points += [
                (int(b), float(v)) for b, v in zip(s["boundaries"], s["values"][1:], strict=True)
            ]
            points.append((max(len(r.get("history") or []), points[-1][0]), points[-1][1]))
            series.setdefault(axis, {})[r["label"]] = points
    return series


def schedule_lines(series: Series) -> list[str]:
    """``l2, <member>: 0.001 → 0.0008 (epoch 2)``: one line per member and coefficient."""
    lines = []
    for axis, members in series.items():
        short = axis.split(".")[-1]
        for label, points in members.items():
            changes = [f"{points[0][1]:.3g}"] + [f"{v:.3g} (epoch {e})" for e, v in points[1:-1]]
            lines.append(f"{short}, {label}: " + " → ".join(changes))
    return lines


@styled
def schedule_figure(series: Series) -> Any:
    """One panel per coefficient: each member's value (log axis) against the epoch, as a step
    line (a value holds from its epoch to the next change)."""
    fig = _figure(figsize=(7, 2.8 * len(series)))
    for i, (axis, members) in enumerate(series.items()):
        ax = fig.add_subplot(len(series), 1, i + 1)
        short = axis.split(".")[-1]
        for label, points in members.items():
            (line,) = ax.step(
                [e for e, _ in points], [v for _, v in points], where="post", lw=1.2, label=label
            )
            _tip(fig, line, f"{label}: " + ", ".join(f"{v:.3g} from epoch {e}" for e, v in points))
        if all(v > 0 for ps in members.values() for _, v in ps):
            log_scale(ax.yaxis)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"{short} (log axis)", fontsize=8)
        ax.set_title(f"{axis}: each member's schedule", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(members) <= 12:
            ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
