"""Where a run's training time went, each stack counted once: pure functions.

A stacked trial has no training time of its own: its members share one stack's wall time
(``stack_seconds``, the same value in every member, and ``stack_size``). Splitting it evenly
would print ``15.6 ± 0.0`` for every member — a number nobody measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["describe_time", "training_time"]

Record = dict[str, Any]


def training_time(records: Sequence[Record]) -> dict[str, Any]:
    """Where the training time went: ``alone`` (seconds of each trial trained alone),
    ``stacks`` (``(seconds, members)`` of each stack, counted once: the members of one stack
    share one ``stack_seconds`` value) and ``total`` (their sum).

    >>> r = [{"metrics": {"seconds": 2.0}}] + [
    ...     {"metrics": {"stack_seconds": 9.0, "stack_size": 3.0}} for _ in range(3)]
    >>> training_time(r)
    {'alone': [2.0], 'stacks': [(9.0, 3)], 'total': 11.0}
    """
    alone: list[float] = []
    stacks: dict[tuple[float, int], int] = {}
    for r in records:
        m = r.get("metrics") or {}
        if m.get("stack_seconds") is not None:
            key = (float(m["stack_seconds"]), int(m.get("stack_size") or 1))
            stacks[key] = stacks.get(key, 0) + 1
        elif m.get("seconds") is not None:
            alone.append(float(m["seconds"]))
    listed = list(stacks)
    return {"alone": alone, "stacks": listed, "total": sum(alone) + sum(s for s, _ in listed)}


def describe_time(time: Mapping[str, Any]) -> str:
    """:func:`training_time` in words ("" when nothing was timed)."""
    alone, stacks = time["alone"], time["stacks"]
    parts = []
    if alone:
        parts.append(
            f"{len(alone)} trial{'s' if len(alone) > 1 else ''} trained alone "
            f"({min(alone):.1f}–{max(alone):.1f} s each)"
        )
    if stacks:
        members = sum(k for _, k in stacks)
        each = ", ".join(f"{s:.1f} s ({k} members)" for s, k in stacks)
        parts.append(
            f"{members} trials trained together in {len(stacks)} stack"
            f"{'s' if len(stacks) > 1 else ''}: {each}; a stacked trial has no time of its own "
            f"(≈{sum(s for s, _ in stacks) / members:.1f} s per member on average)"
        )
    if not parts:
        return ""
    return f"Training time {time['total']:.1f} s: " + "; ".join(parts) + "."
