"""The one ``[[grid]]`` entry a search method searches: its axes, and the grid point of any
chosen values.

A study with ``[search] method`` other than ``"grid"`` has exactly one ``[[grid]]`` entry
(alternatives — which regularizer — are a ``{values = [...]}`` axis of it). Parsing checks the
entry once: its axes (:func:`~reglab.lab.search.axes.find_axes`) and one concrete point (every
continuous axis at its low end, every choice at its first value), so a mistake in the entry is
reported with its key path before anything trains. :meth:`SearchedEntry.point` turns the values
a sampler or a coarse-to-fine stage chose into a :class:`~reglab.lab.settings.grid.GridPoint`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reglab.lab.search.axes import SearchSpace, concrete, find_axes
from reglab.lab.search.coarse_to_fine import first_stage
from reglab.lab.search.pbt import check_population
from reglab.lab.search.settings import SearchSettings
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.grid import GridPoint, value_path
from reglab.lab.settings.schema import fail
from reglab.lab.settings.selection import held_out_split

__all__ = ["SearchedEntry", "check_searched", "parse_entry"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return str(value.get("class_name", "table"))
    if isinstance(value, list):
        return "x".join(_fmt(v) for v in value)
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


@dataclass(frozen=True)
class SearchedEntry:
    """The searched entry: ``name``, its study-file ``path``, the merged table's ``origins``
    (for error paths) and its :class:`SearchSpace`."""

    name: str
    path: str
    space: SearchSpace
    origins: Mapping[str, Mapping[str, str]] = field(repr=False, compare=False)

    def point(self, params: Mapping[str, Any], tag: str = "") -> GridPoint:
        """The grid point of ``params`` (axis name -> value): the concrete entry, parsed.
        ``tag`` (a trial number, ``#7``) goes into the label and key; points of equal params
        and tag share the key, so one configuration's seeds group together."""
        config = TrialConfig.parse(concrete(self.space, params), self.path, self.origins)
        label = self.label(params, tag)
        shown = {a.name: params[a.name] for a in self.space.axes}
        return GridPoint(_slug(label), label, self.name, shown, config)

    def label(self, params: Mapping[str, Any], tag: str = "") -> str:
        """``L2 #7 l2=0.000316``: the entry's name, ``tag``, each axis's last key = value."""
        short = [a.name.split(".")[-1] for a in self.space.axes]
        return " ".join(
            [self.name, *([tag] if tag else [])]
            + [f"{s}={_fmt(params[a.name])}" for s, a in zip(short, self.space.axes, strict=True)]
        )

    def fragment_entry(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The concrete entry as a ``[[grid]]`` entry writes it: without the study-level
        ``[data]``, and with only the ``model`` / ``train`` keys the entry wrote or searched."""
        entry = concrete(self.space, params)
        entry.pop("data", None)
        searched = {a.keys[:2] for a in self.space.axes}
        for section in ("model", "train"):
            own = self.origins.get(section, {})
            kept = {
                k: v
                for k, v in entry.get(section, {}).items()
                if own.get(k) == f"{self.path}.{section}" or (section, k) in searched
            }
            if kept:
                entry[section] = kept
            else:
                entry.pop(section, None)
        return {"name": self.name, **entry}

    def sample(self) -> dict[str, Any]:
        """One value per axis: a continuous axis's low end, a choice's first value."""
        return {a.name: a.choices[0] if a.kind == "choice" else a.low for a in self.space.axes}

    def examples(self) -> list[GridPoint]:
        """One point per combination of the choice axes, continuous axes at their low end:
        every model, factory and regularizer kind the search can build, for the checks made
        before a run (trusted factories, rules that match)."""
        choices = [list(a.choices) if a.kind == "choice" else [a.low] for a in self.space.axes]
        names = [a.name for a in self.space.axes]
        return [
            self.point(dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*choices)
        ]

    @property
    def epochs(self) -> int:
        """The entry's training epochs (the pruners' resource)."""
        return self.point(self.sample()).config.train.epochs


def parse_entry(
    name: str, merged: Mapping[str, Any], path: str, origins: Mapping[str, Mapping[str, str]]
) -> SearchedEntry:
    """The :class:`SearchedEntry` of a merged ``[[grid]]`` entry; raises the study's one-line
    errors (an axis's key path, or the first concrete point's)."""
    space = find_axes(merged, lambda keys: value_path(keys, path, origins))
    entry = SearchedEntry(name, path, space, origins)
    entry.point(entry.sample())  # every other setting of the entry is checked here
    return entry


def check_searched(settings: SearchSettings, entry: SearchedEntry, origin: str) -> None:
    """What ``reglab run`` can search, checked at parse time (one-line errors naming the key):
    no pruner with coarse-to-fine (its stages compare every value trained to
    the end), a ``{log = [a, b]}`` axis for coarse-to-fine, PBT's coefficient axes
    (:func:`~reglab.lab.search.pbt.check_population`), and a validation split — a search
    chooses on the validation metric, never on the test set."""
    at = f"{origin}.search"
    if settings.method == "pbt":  # what a stack's members can differ in, and rank on
        check_population(entry.space, settings, at)
    if settings.method == "coarse-to-fine":
        if settings.pruner != "none":
            raise fail(
                f"{at}.pruner",
                "must be 'none' with method 'coarse-to-fine' (its stages compare values "
                "trained to the end)",
                settings.pruner,
            )
        first_stage(entry.space)  # needs a {log = [a, b]} axis
    data = entry.point(entry.sample()).config.data
    if held_out_split(data) != "validation":  # the default split is added when unset
        raise fail(
            f"{origin}.data.validation",
            f"method {settings.method!r} chooses on the validation metric: hold out a "
            "fraction > 0 of the training rows",
            data.validation,
        )
