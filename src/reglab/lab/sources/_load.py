"""Parse a ``[data]`` table into a format's :class:`Source`, and load it (cached)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from reglab.lab.settings.schema import KeyPath, fail, key_path
from reglab.lab.sources._base import FORMATS, Source, SourceData, finish

__all__ = ["load_source", "parse_source"]


def parse_source(
    raw: Mapping[str, Any],
    path: str = "data",
    *,
    root: str | Path = ".",
    origins: Mapping[str, str] | None = None,
    ignore: Iterable[str] = (),
) -> Source:
    """The typed table of ``raw`` (a ``[data]`` table with a ``format`` key), its paths
    resolved against ``root`` (the study file's folder) and checked to exist.

    ``path`` is the table's key path (``"mystudy.data"``) and ``origins`` the merged keys'
    paths (see :func:`reglab.lab.settings.schema.key_path`); keys in ``ignore`` belong to the
    lab's own ``[data]`` table (``validation``, ``subset``, ...) and are passed over. Only keys,
    types and the files' existence are checked here; :func:`load_source` reads and checks
    the data.

    >>> parse_source({"format": "npz", "path": "missing.npz"}, "s.data")
    Traceback (most recent call last):
    ...
    reglab.lab.settings.schema.StudyError: s.data.path: no such file: ...missing.npz (got ...)
    """
    at = key_path(path, origins)
    if not isinstance(raw, Mapping):
        raise fail(path, "expected a table", raw)
    name = raw.get("format")
    if name not in FORMATS:
        raise fail(at("format"), f"expected one of {', '.join(sorted(FORMATS))}", name)
    cls = FORMATS[name]
    skipped = set(ignore)
    own = {k: v for k, v in raw.items() if k not in skipped}
    unknown = sorted(set(own) - set(cls.keys()))
    if unknown:
        allowed = ", ".join(sorted(set(cls.keys()) | skipped))
        raise fail(at(unknown[0]), f"unknown key; allowed: {allowed}", raw[unknown[0]])
    source = cls.parse(own, path, origins)
    folder = Path(root)
    resolved = {}
    for key in ("path", "test_path"):
        written = getattr(source, key)
        if written is None:
            continue
        target = (folder / Path(written).expanduser()).resolve()
        if not target.exists():
            raise fail(at(key), f"no such {cls.kind}: {target}", written)
        if (cls.kind == "folder") != target.is_dir():
            raise fail(at(key), f"expected a {cls.kind}: {target}", written)
        resolved[key] = str(target)
    source = dataclasses.replace(source, **resolved)
    # where it was parsed, for load_source's messages (not a field: not part of equality)
    object.__setattr__(source, "_where", (path, dict(origins or {})))
    return source


def load_source(
    source: Source, path: str | None = None, origins: Mapping[str, str] | None = None
) -> SourceData:
    """Read and check ``source`` (parsed by :func:`parse_source`): the arrays exist and are
    data (no pickles), shapes agree, features are finite numbers, labels are integers in range
    (or class names), and a stratified split has enough rows. Errors name the key path under
    ``path`` (default: the one :func:`parse_source` was given; ``"data"`` for a table built
    directly). The result is cached while the files are unchanged (size and modification time),
    so a study checks its data before its run and every trial reuses it: the tensors are
    shared, so callers must not change them in place."""
    if path is None:
        path, parsed_origins = getattr(source, "_where", ("data", {}))
        origins = parsed_origins if origins is None else origins
    stamp = tuple((str(f), *_stat(f)) for f in source.files())
    origin = tuple(sorted((origins or {}).items()))
    return _cached(source, path, origin, stamp)


def _stat(file: Path) -> tuple[int, int]:
    try:
        status = file.stat()
    except OSError:  # gone since parsing: the reader says so
        return (-1, -1)
    return (status.st_mtime_ns, status.st_size)


@lru_cache(maxsize=4)
def _cached(source: Source, path: str, origins: tuple, stamp: tuple) -> SourceData:
    at: KeyPath = key_path(path, dict(origins))
    return finish(source, source.read(at), at)
