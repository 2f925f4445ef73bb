"""``method = "grid"`` (the default): every point of the grid, enqueued as today."""

from __future__ import annotations

from reglab.lab.search._base import SearchMethod, register

__all__ = ["Grid"]


@register
class Grid(SearchMethod):
    """The study's grid, each point times each seed; no sampler (the lab enqueues)."""

    name = "grid"
