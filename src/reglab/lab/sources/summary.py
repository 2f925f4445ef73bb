"""``reglab data inspect FILE_OR_STUDY``: what the lab will see of a data source."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reglab._optional import toml
from reglab.lab.settings.schema import StudyError, fail
from reglab.lab.sources._base import FORMATS, Source, SourceData
from reglab.lab.sources._load import load_source, parse_source

__all__ = ["Summary", "describe", "infer_format"]

_SUFFIXES = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_HF_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


def infer_format(target: str | Path) -> dict[str, Any]:
    """The ``[data]`` table a file or folder implies: ``.npz``, ``.csv``, ``.parquet`` by
    extension; ``x.npy`` -> ``npy`` of its folder with ``x`` its stem; a folder with
    ``dataset_info.json``, ``state.json`` or ``dataset_dict.json`` -> ``hf``; a folder with
    ``{x,y}.npy`` -> ``npy``; a folder of folders -> ``images``.

    >>> infer_format("digits.npz")
    {'format': 'npz', 'path': 'digits.npz'}
    """
    target = Path(target)
    suffix = target.suffix.lower()
    if suffix == ".npy":
        return {"format": "npy", "path": str(target.parent), "x": target.stem}
    if suffix in _SUFFIXES:
        return {"format": _SUFFIXES[suffix], "path": str(target)}
    if target.is_dir():
        if any((target / f).is_file() for f in _HF_FILES):
            return {"format": "hf", "path": str(target)}
        if (target / "x.npy").is_file():
            return {"format": "npy", "path": str(target)}
        if any(p.is_dir() and not p.name.startswith(".") for p in target.iterdir()):
            return {"format": "images", "path": str(target)}
    if not target.exists():
        raise StudyError(f"{target}: no such file or folder")
    raise StudyError(
        f"{target}: cannot tell its format; expected a .toml study, "
        f"{', '.join(_SUFFIXES)}, a saved Hugging Face dataset or a folder of class folders"
    )


@dataclass(frozen=True)
class Summary:
    """What the lab sees of a source; ``str()`` is the printout. ``validation`` is the
    fraction of the training rows the lab holds out (``max(1, round(rows * validation))``)."""

    source: Source
    data: SourceData
    validation: float = 0.0

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per split: ``train``, ``validation``, ``test``."""
        train = len(self.data.y_train)
        held = max(1, round(train * self.validation)) if self.validation > 0 else 0
        return {"train": train - held, "validation": held, "test": len(self.data.y_test)}

    def __str__(self) -> str:
        d, sizes = self.data, self.sizes
        shown = ("format", "path", "test_size", "split_seed")
        keys = {k: v for k, v in self.source.to_dict().items() if k not in shown and v is not None}
        lines = [
            f"format    {self.source.format}: {self.source.path}",
            f"rows      {sum(sizes.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sizes.items() if k != "validation" or v)
            + f" (test rows: {d.split})",
            f"features  {d.features}",
            "image     "
            + ("none" if d.image_shape is None else "×".join(map(str, d.image_shape)))
            + ("" if d.image_shape is None else " (C×H×W)"),
            f"classes   {d.classes}",
        ]
        if keys:
            lines.insert(1, f"options   {', '.join(f'{k} = {v!r}' for k, v in keys.items())}")
        width = max(5, *(len(n) for n in d.class_names))
        lines.append(f"  {'class':<{width}}  {'train':>7}  {'test':>7}")
        for name, tr, te in zip(d.class_names, d.train_counts, d.test_counts, strict=True):
            lines.append(f"  {name:<{width}}  {tr:>7}  {te:>7}")
        return "\n".join(lines)


def describe(
    target: str | Path | Source,
    *,
    validation: float | None = None,
    ignore: Iterable[str] | None = None,
    **keys: Any,
) -> Summary:
    """Read and check a source and summarise it (``print(describe("digits.npz"))``).

    ``target`` is a parsed :class:`Source`, a study file (``.toml``; its ``[data]`` table,
    which must have a ``format``), or a data file or folder (format from
    :func:`infer_format`). ``keys`` add or replace ``[data]`` keys (``label="species"``).
    For a study, ``ignore`` lists the lab's own ``[data]`` keys (default: every key the
    format does not know) and ``validation`` defaults to its ``[data] validation``.
    Raises :class:`~reglab.lab.settings.schema.StudyError` as the lab would.
    """
    if isinstance(target, Source):
        return Summary(target, load_source(target), validation or 0.0)
    target = Path(target)
    where, root = "data", Path(".")
    if target.suffix.lower() == ".toml":
        raw, where, root = _study_data(target)
        if validation is None:
            held = raw.get("validation", 0.0)
            validation = float(held) if isinstance(held, numbers.Real) else 0.0
    else:
        raw = infer_format(target)
    raw = {**raw, **keys}
    if ignore is None and raw.get("format") in FORMATS:
        ignore = set(raw) - set(FORMATS[raw["format"]].keys())
    source = parse_source(raw, where, root=root, ignore=ignore or ())
    return Summary(source, load_source(source, where), validation or 0.0)


def _study_data(study: Path) -> tuple[dict[str, Any], str, Path]:
    try:
        document = toml().loads(study.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{study}: no such study file") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise StudyError(f"{study}: cannot read it as TOML: {err}") from None
    where = f"{study.stem}.data"
    data = document.get("data", {})
    if not isinstance(data, dict):
        raise fail(where, "expected a table", data)
    if "format" not in data:
        raise fail(
            f"{where}.format",
            "the study uses a built-in dataset ('name'); inspect describes [data] format = ... "
            "sources",
            None,
        )
    return data, where, study.parent
