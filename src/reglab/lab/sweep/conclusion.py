"""What a search ends with: the stages it ran, the chosen configuration with its evidence,
and that configuration as paste-ready text (``best.py``: a ``reglab.attach(...)`` call;
``best.toml``: a ``[[grid]]`` entry) in the run directory. Pure functions of the measured
points (settings -> per-seed objective values), except :func:`conclusion`, which writes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reglab._io import atomic_write_text
from reglab.lab.rundir import RunDir
from reglab.lab.search import SearchSpace, attach_call, evidence, study_fragment
from reglab.lab.search.entry import SearchedEntry
from reglab.lab.sweep.pruning import lower_is_better

__all__ = ["choose", "conclusion", "evidence_lines", "stage_lines"]

Results = Sequence[tuple[dict[str, Any], list[float]]]


def choose(space: SearchSpace, results: Results) -> tuple[dict[str, Any], list[float]] | None:
    """The point with the best mean objective (ties: the smaller coefficients, as
    :func:`~reglab.lab.search.evidence` ranks them); None without results."""
    if not results:
        return None
    numeric = [a.name for a in space.axes if a.kind != "choice"]
    ordered = sorted(results, key=lambda pv: [float(pv[0][n]) for n in numeric])
    return max(ordered, key=lambda pv: sum(pv[1]) / len(pv[1]))


def stage_lines(space: SearchSpace, staged: Mapping[int, list[dict[str, Any]]]) -> list[str]:
    """``stage 1: 6 points, 18 trials; l2 in [1e-06, 0.1]`` per stage (``staged``: each
    stage's complete trials' settings)."""
    lines = []
    for stage, measured in sorted(staged.items()):
        distinct = {json.dumps(p, sort_keys=True, default=str) for p in measured}
        ranges = [
            f"{a.name.split('.')[-1]} in [{min(p[a.name] for p in measured):.3g}, "
            f"{max(p[a.name] for p in measured):.3g}]"
            for a in space.axes
            if a.kind == "log"
        ]
        lines.append(
            f"stage {stage}: {len(distinct)} points, {len(measured)} trials; " + ", ".join(ranges)
        )
    return lines


def evidence_lines(
    space: SearchSpace, results: Results, chosen: Mapping[str, Any], name: str
) -> list[str]:
    """One :func:`~reglab.lab.search.evidence` line per log axis, over the points that share
    the chosen point's other settings (``name``: the objective; a loss is shown as measured,
    lower is better)."""
    lower = lower_is_better(name)  # stored negated (the study maximises)
    scale, decimals = (100.0, 1) if name.endswith("acc") else (1.0, 4)
    lines = []
    for a in space.axes:
        if a.kind != "log":
            continue
        others = [o.name for o in space.axes if o.name != a.name]
        line: dict[float, list[float]] = {}
        for params, values in results:
            if all(params[o] == chosen[o] for o in others):
                shown = [-v for v in values] if lower else list(values)
                line.setdefault(float(params[a.name]), []).extend(shown)
        short = a.name.split(".")[-1]
        text = evidence(short, line, name, maximize=not lower, scale=scale, decimals=decimals)
        lines.append("  " + text)
    return lines


def conclusion(
    entry: SearchedEntry,
    results: Results,
    staged: Mapping[int, list[dict[str, Any]]],
    name: str,
    run_dir: RunDir | None = None,
) -> str:
    """The text ``reglab run`` prints at the end of a search; writes ``best.toml`` (and
    ``best.py`` when the entry has ``rules``) into ``run_dir``."""
    best = choose(entry.space, results)
    if best is None:
        return "no configuration finished: nothing to choose"
    params, _ = best
    lines = [
        *stage_lines(entry.space, staged),
        f"chosen: {entry.label(params)}",
        *evidence_lines(entry.space, results, params, name),
    ]
    concrete = entry.fragment_entry(params)
    texts = {"best.toml": study_fragment(concrete, name=f"{entry.name}-best") + "\n"}
    if concrete.get("rules"):
        texts["best.py"] = attach_call(concrete["rules"]) + "\n"
    if run_dir is not None:
        for file, text in texts.items():
            atomic_write_text(run_dir.output(file), text)
    shown = "\n".join(texts[f] for f in ("best.py", "best.toml") if f in texts)
    return "\n".join(lines) + "\n\n" + shown
