"""The study-file schema: typed, frozen tables that own their defaults and validation.

A table is a frozen dataclass whose fields say what they accept through :func:`spec`::

    @dataclass(frozen=True)
    class TrainConfig(Table):
        lr: float = spec(1e-3, number(above=0.0))

:meth:`Table.parse` turns a decoded TOML table into an instance, with one message format for
every error — the key path, what is allowed, and the value::

    study.grid[1].train.lr: must be a finite number > 0 (got -0.01)

Parsing happens once, before a run directory or a trial exists; everything downstream reads
attributes of these objects and never re-defaults a raw dict.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from reglab._validation import InvalidParameterError

__all__ = [
    "INT_MAX",
    "Check",
    "KeyPath",
    "StudyError",
    "Table",
    "boolean",
    "check_keys",
    "choice",
    "fail",
    "integer",
    "key_path",
    "number",
    "section_base",
    "section_path",
    "shown_value",
    "spec",
    "string",
]


class StudyError(InvalidParameterError):
    """A study file (or its command-line overrides) is invalid; the message starts with the
    key path."""


def fail(path: str, message: str, value: Any) -> StudyError:
    """The lab's one error format: ``path: message (got value)`` (a long value abbreviated)."""
    return StudyError(f"{path}: {message} (got {shown_value(value)})")


#: The longest value an error message quotes in full.
_SHOWN = 120
#: Integers are 64-bit wherever a study's value goes (torch, NumPy, SQL): the largest.
INT_MAX = 2**63 - 1


def shown_value(value: Any) -> str:
    """``repr(value)``, abbreviated: an enormous int by its size (Python refuses to print
    ints of more than 4300 digits), a long text by its first characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int inside a list, too deep a structure
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


#: ``check(path, value) -> normalised value``; raises :func:`fail` errors.
Check = Callable[[str, Any], Any]
#: A merged table's key -> its study-file path (``s.grid[1].model.sizes`` when the grid entry
#: wrote ``sizes``, ``s.model.sizes`` when it came from the study-level table): cross-table
#: checks name the table the user wrote.
KeyPath = Callable[[str], str]


def key_path(path: str, origins: Mapping[str, str] | None = None) -> KeyPath:
    """The :data:`KeyPath` of a table at ``path`` whose keys may come from other tables
    (``origins[key]``: the path of the table a merged key was written in; ``origins[""]``:
    where the merged table's own keys come from by default)."""
    written = origins or {}
    return lambda key: f"{written.get(key, written.get('', path))}.{key}"


def section_path(origins: Mapping[str, str], path: str, section: str) -> KeyPath:
    """The :data:`KeyPath` of a merged section (``data``, ``model``, ``train``) of the grid
    entry at ``path``: ``s.grid[1].model.sizes`` when the entry wrote ``sizes``,
    ``s.model.sizes`` when the study-level table did.

    >>> at = section_path({"": "s.model", "sizes": "s.grid[1].model"}, "s.grid[1]", "model")
    >>> at("sizes"), at("activation")
    ('s.grid[1].model.sizes', 's.model.activation')
    """
    return key_path(section_base(origins, path, section), origins)


def section_base(origins: Mapping[str, str], path: str, section: str) -> str:
    """The path of a merged section's own table: where its keys come from by default."""
    return origins.get("", f"{path}.{section}")


def check_keys(at: KeyPath, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """The unknown-key check of every study table: the first key of ``table`` (in sorted
    order) not in ``allowed`` fails at its path ``at(key)``, listing the allowed keys."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise fail(
            at(unknown[0]),
            f"unknown key; allowed: {', '.join(sorted(allowed))}",
            table[unknown[0]],
        )


T = TypeVar("T", bound="Table")
_REQUIRED = object()


def spec(default: Any = _REQUIRED, check: Check | None = None, *, doc: str = "") -> Any:
    """A table field: its default (none: required) and its check."""
    metadata = {"check": check, "doc": doc}
    if default is _REQUIRED:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Table:
    """Base of the schema's frozen dataclasses (see the module docstring)."""

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def parse(cls: type[T], raw: Any, path: str, origins: Mapping[str, str] | None = None) -> T:
        """Validate ``raw`` (a mapping) into an instance. ``origins`` maps a key to the path
        of the table it was written in, when tables were merged (grid entry over study)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise fail(path, "expected a table", raw)
        at = key_path(path, origins)
        check_keys(at, raw, cls.keys())
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            where = at(f.name)
            check = f.metadata.get("check")
            if f.name in raw:
                value = raw[f.name]
                values[f.name] = check(where, value) if check is not None else value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if check is not None:
                    check(where, None)  # the check's own message says what is expected
                raise fail(where, "required", None)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The table as plain data (what ``reglab show`` prints)."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Table):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# -- checks ---------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
    what: str = "a number",
) -> Check:
    """A finite real number within the bounds (``minimum <= x <= maximum``, ``above < x``,
    ``x < below``); returned as a float."""
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if above is not None:
        parts.append(f"> {above:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    if minimum is not None and below is not None and not (maximum or above):
        allowed = f"a finite number in [{minimum:g}, {below:g})"
    else:
        allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(path: str, value: Any) -> float:
        if not _is_number(value):
            raise fail(path, f"expected {what}", value)
        try:
            value = float(value)
        except OverflowError:  # an int beyond the range of a float
            raise fail(path, f"must be {allowed}", value) from None
        if (
            not math.isfinite(value)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
            or (above is not None and value <= above)
            or (below is not None and value >= below)
        ):
            raise fail(path, f"must be {allowed}", value)
        return value

    return check


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An int (not a bool, not 1.7) within the bounds."""
    allowed = "an int" + (f" >= {minimum}" if minimum is not None else "")
    allowed += f" <= {maximum}" if maximum is not None else ""

    def check(path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(path, f"expected {allowed}", value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise fail(path, f"expected {allowed}", value)
        if not -INT_MAX - 1 <= value <= INT_MAX:
            raise fail(path, f"expected {allowed} that fits in 64 bits", value)
        return value

    return check


def boolean() -> Check:
    def check(path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(path, "expected true or false", value)
        return value

    return check


def string() -> Check:
    def check(path: str, value: Any) -> str:
        if not isinstance(value, str):
            raise fail(path, "expected a string", value)
        return value

    return check


def choice(*options: str, listing: bool = False) -> Check:
    """One of ``options``. Messages read ``expected 'a', 'b' or 'c'``, or with ``listing``
    ``expected one of a, b, c``."""
    if listing:
        allowed = f"one of {', '.join(options)}"
    elif len(options) == 1:
        allowed = repr(options[0])
    else:
        allowed = ", ".join(repr(o) for o in options[:-1]) + f" or {options[-1]!r}"

    def check(path: str, value: Any) -> str:
        if value not in options:
            raise fail(path, f"expected {allowed}", value)
        return value

    return check


def sequence_of(item: Check, *, length: int | None = None, what: str = "a list") -> Check:
    """A list whose items pass ``item``; returned as a tuple."""

    def check(path: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise fail(path, f"expected {what}", value)
        if length is not None and len(value) != length:
            raise fail(path, f"expected {what}", value)
        return tuple(item(f"{path}[{i}]", v) for i, v in enumerate(value))

    return check


def table(cls: type[Table]) -> Check:
    """A nested table parsed as ``cls``."""
    return lambda path, value: cls.parse(value, path)
