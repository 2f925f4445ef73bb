"""What a multi-objective search ends with: its Pareto front, printed with each point's
settings and objective values, and written as paste-ready text — ``best.py`` (one
``reglab.attach(...)`` call per point) and ``best.toml`` (one ``[[grid]]`` entry per point:
the front as a study of its own).

Only the objectives are shown: validation metrics and statistics of the trained weights
(:data:`~reglab.lab.metrics.OBJECTIVES`); test metrics decide nothing and are not printed here.
Pure functions of the front (:func:`reglab.lab.search.pareto_front`), except
:func:`front_conclusion`, which writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from reglab._io import atomic_write_text
from reglab.lab.metrics import Objective, objective_values
from reglab.lab.rundir import RunDir
from reglab.lab.search import ParetoPoint, attach_call, study_fragment
from reglab.lab.search.entry import SearchedEntry

__all__ = ["front_conclusion", "front_files", "front_lines", "ordered"]


def ordered(front: Sequence[ParetoPoint], objectives: Sequence[Objective]) -> list[ParetoPoint]:
    """The front best-first on the first objective (ties: trial number)."""
    sign = -1.0 if objectives[0].direction == "maximize" else 1.0
    return sorted(front, key=lambda p: (sign * p.values[0], p.number))


def front_lines(
    entry: SearchedEntry,
    front: Sequence[ParetoPoint],
    objectives: Sequence[Objective],
    complete: int,
) -> list[str]:
    """The printed front: a heading naming the objectives and their directions, then one line
    per point (``#3 L2 l2=0.000316: val % 91.2, ‖W‖₂ 12.3``), best first on the first
    objective. ``complete``: how many trials were compared."""
    names = " and ".join(
        f"{o.name} ({'higher' if o.direction == 'maximize' else 'lower'} is better)"
        for o in objectives
    )
    lines = [
        f"Pareto front of {names}: {len(front)} of {complete} complete trials are not "
        "dominated (no other trial is as good on every objective and better on one)"
    ]
    for point in ordered(front, objectives):
        label = entry.label(point.params, f"#{point.number}")
        lines.append(f"  {label}: {objective_values(objectives, point.values)}")
    return lines


def front_files(
    entry: SearchedEntry, front: Sequence[ParetoPoint], objectives: Sequence[Objective]
) -> dict[str, str]:
    """``best.toml`` (one ``[[grid]]`` entry per point, named ``<entry>-pareto-<i>``, its
    values in a comment above it) and, when the entry has ``rules``, ``best.py`` (the imports
    once, then one ``reglab.attach`` call per point under the same comment)."""
    toml, python = [], []
    points = ordered(front, objectives)
    heading = (
        f"# The Pareto front of {', '.join(o.name for o in objectives)}: {len(points)} "
        "configurations, best first on the first objective"
    )
    for i, point in enumerate(points, start=1):
        note = f"# {i}. trial #{point.number}: {objective_values(objectives, point.values)}"
        concrete = entry.fragment_entry(point.params)
        toml.append(note + "\n" + study_fragment(concrete, name=f"{entry.name}-pareto-{i}"))
        if concrete.get("rules"):
            imports, call = attach_call(concrete["rules"]).split("\n\n", 1)
            if not python:
                python.append(imports)
            python.append(note + "\n" + call)
    texts = {"best.toml": "\n\n".join([heading, *toml]) + "\n"}
    if python:
        choose = "# paste the call of the trade-off you want"
        texts["best.py"] = "\n\n".join([python[0], f"{heading};\n{choose}", *python[1:]]) + "\n"
    return texts


def front_conclusion(
    entry: SearchedEntry,
    front: Sequence[ParetoPoint],
    objectives: Sequence[Objective],
    complete: int,
    run_dir: RunDir | None = None,
) -> str:
    """The text ``reglab run`` prints at the end of a multi-objective search; writes
    ``best.toml`` (and ``best.py``) into ``run_dir``."""
    if not front:
        return "no configuration finished: no Pareto front"
    texts = front_files(entry, front, objectives)
    if run_dir is not None:
        for file, text in texts.items():
            atomic_write_text(run_dir.output(file), text)
    shown = "\n".join(texts[f] for f in ("best.py", "best.toml") if f in texts)
    return "\n".join(front_lines(entry, front, objectives, complete)) + "\n\n" + shown
