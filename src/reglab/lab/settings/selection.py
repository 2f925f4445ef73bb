"""Every study that selects holds out validation data: the rule, in one place.

A study *selects* when it has more than one configuration (grid points, or a ``[search]``
method that samples or refines them): the sweep's objective (:mod:`reglab.lab.sweep.objective`)
is then a validation metric, so the training rows must lend some to validation.
:func:`parse_study <reglab.lab.settings.studyfile.parse_study>` applies
:func:`with_validation` to the study-level ``[data]`` table once its points are known:

* ``validation`` not given and more than one configuration: it becomes
  :data:`DEFAULT_VALIDATION` (0.2), written into the study as parsed (so the run directory
  records it, and it is part of the study's fingerprint);
* ``validation = 0`` given with more than one configuration: refused, naming the key
  (choosing on the test set would make the reported test numbers optimistic);
* a single configuration, or a dataset that brings its own validation split
  (:data:`OWN_VALIDATION`, e.g. the Gutenberg corpus): left as written.

>>> with_validation({"name": "digits"}, 8, None, "s.data")
{'name': 'digits', 'validation': 0.2}
>>> with_validation({"name": "digits"}, 1, None, "s.data") is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reglab.lab.settings.schema import fail

__all__ = ["DEFAULT_VALIDATION", "OWN_VALIDATION", "held_out_split", "selects", "with_validation"]

#: The fraction of the training rows held out when a selecting study states none.
DEFAULT_VALIDATION = 0.2
#: Datasets whose validation split is their own (the ``[data] validation`` key is not used).
OWN_VALIDATION = frozenset({"gutenberg"})


def selects(configurations: int, search: Any = None) -> bool:
    """Whether a study chooses among configurations: more than one grid point, or a
    ``[search]`` table whose method is not a plain grid (it samples or refines points)."""
    method = search.get("method", "grid") if isinstance(search, Mapping) else "grid"
    return configurations > 1 or method != "grid"


def with_validation(
    data: Mapping[str, Any], configurations: int, search: Any, path: str
) -> dict[str, Any] | None:
    """The study-level ``[data]`` table with :data:`DEFAULT_VALIDATION` added when the rule
    (see the module) asks for it, else None (the table stays as written). ``path`` is the
    table's key path, for the error an explicit ``validation = 0`` gets."""
    if data.get("name") in OWN_VALIDATION or not selects(configurations, search):
        return None
    if "validation" not in data:
        return {**data, "validation": DEFAULT_VALIDATION}
    value = data["validation"]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        raise fail(
            f"{path}.validation",
            f"must be > 0 when the study chooses among {configurations} configurations (the "
            "sweep chooses on validation, never on test); leave it out for the default "
            f"{DEFAULT_VALIDATION}",
            value,
        )
    return None


def held_out_split(data: Any) -> str:
    """What a trial's held-out learning curve is measured on, for a parsed ``[data]`` table
    (:class:`~reglab.lab.settings.data.DataConfig`): ``"validation"`` when the study holds out
    validation rows (or the dataset has its own split), else ``"test"``."""
    return "validation" if data.validation > 0 or data.name in OWN_VALIDATION else "test"
