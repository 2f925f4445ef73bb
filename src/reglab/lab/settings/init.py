"""``[train] init``: where every trial of a grid point starts from, parsed and checked before
a run directory exists.

``init`` is one of

* a ``.safetensors`` file (read as data only: never ``torch.load``, never a pickle), or the
  trial folder of an earlier run (``runs/x/trials/<key>``, whose ``model.safetensors`` is
  used); a relative path is relative to the study file's folder (:func:`resolve_paths`
  makes it absolute when the file is read, so a resumed run finds it again);
* the name of another ``[[grid]]`` entry of the same study: each trial starts from the
  weights that entry's trial of the same seed trains (the two-phase study: fit without
  regularization, then shrink the trained weights with a penalty). That entry must be one
  grid point without ``init`` of its own and build the same network.

:func:`check_study` checks every point's ``init`` when the study is parsed: the file is a
readable safetensors file whose tensor names and shapes are exactly the network's state dict
(the network built on the meta device, so no memory is used), or the entry exists and builds
a network of the same names and shapes. Errors name the key path and the first difference::

    study.grid[1].train.init: fc1.weight is (10, 32) in model.safetensors, the model's is
    (10, 64) (got 'phase1/model.safetensors')

A factory model (user code) is not built at parse time; its ``init`` is checked when the trial
starts (:func:`reglab.lab.work.init.load_init`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reglab.lab.settings.schema import fail

__all__ = [
    "InitSource",
    "check_study",
    "file_shapes",
    "init_source",
    "resolve_paths",
    "shape_difference",
    "wanted",
]

#: The concrete tables (as JSON) of grid points some other point starts from, as parsed in
#: this process: their lone trials keep their weights for the points that start from them
#: (:mod:`reglab.lab.work.init`), and they do not train in stacks.
_WANTED: set[str] = set()


@dataclass(frozen=True)
class InitSource:
    """A parsed ``init``: ``file`` (a safetensors file) or ``entry`` (a grid entry's name,
    then ``config`` is that entry's parsed point)."""

    file: Path | None = None
    entry: str = ""
    config: Any = None


def config_id(config: Any) -> str:
    """A grid point's identity across processes: its concrete table as canonical JSON."""
    return json.dumps(config.raw, sort_keys=True, default=str)


def wanted(config: Any) -> bool:
    """Whether some parsed point starts from ``config``'s trials."""
    return config_id(config) in _WANTED


def _entry_names(raw: Mapping[str, Any]) -> set[str]:
    grid = raw.get("grid")
    if not isinstance(grid, list):
        return set()
    return {e["name"] for e in grid if isinstance(e, Mapping) and isinstance(e.get("name"), str)}


def resolve_paths(raw: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """``raw`` with each ``train.init`` path (study-level and per grid entry) made absolute
    against ``folder`` (the study file's); names of grid entries and absolute paths stay."""
    raw = copy.deepcopy(dict(raw))
    names = _entry_names(raw)
    tables = [raw.get("train")]
    tables += [e.get("train") for e in raw.get("grid") or [] if isinstance(e, Mapping)]
    for table in tables:
        if not isinstance(table, dict):
            continue
        value = table.get("init")
        if not isinstance(value, str) or not value or value in names:
            continue
        if not Path(value).is_absolute():
            table["init"] = str((Path(folder) / value).resolve())
    return raw


def _weights_file(path: Path) -> Path:
    return path / "model.safetensors" if path.is_dir() else path


def file_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a safetensors file, read from its header only (tied names that a
    run directory stored once are listed under each name). Raises ``ValueError`` for a file
    that is not a readable safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            tied = json.loads((f.metadata() or {}).get("tied", "{}"))
            shapes = {n: tuple(f.get_slice(n).get_shape()) for n in f.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for bad files
        raise ValueError(f"not a readable safetensors file ({err})") from None
    shapes.update({dropped: shapes[kept] for dropped, kept in tied.items() if kept in shapes})
    return shapes


def model_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{state-dict name: shape}`` of a module."""
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def shape_difference(
    found: Mapping[str, tuple[int, ...]], wanted: Mapping[str, tuple[int, ...]], where: str
) -> str | None:
    """The first difference between the tensors ``found`` (in ``where``) and the model's
    ``wanted`` ones, or None when they agree."""
    for name, shape in wanted.items():
        if name not in found:
            return f"{where} has no {name} (the model's {name} is {shape})"
        if tuple(found[name]) != tuple(shape):
            return f"{name} is {tuple(found[name])} in {where}, the model's is {tuple(shape)}"
    extra = sorted(set(found) - set(wanted))
    if extra:
        return f"{where} has {extra[0]}, which the model has not"
    return None


def _meta_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return model_shapes(config.network())


def init_source(text: str, path: str, entries: Mapping[str, Any], own: str) -> InitSource:
    """Parse one point's ``init`` (``entries``: grid entry name -> its parsed points;
    ``own``: the point's own entry)."""
    if text in entries:
        if text == own:
            raise fail(path, "a grid entry cannot start from its own trials", text)
        points = entries[text]
        if len(points) != 1:
            raise fail(path, f"grid entry {text!r} sweeps {len(points)} points; name one", text)
        ref = points[0].config
        if ref.train.init:
            raise fail(path, f"grid entry {text!r} starts from init itself; no chains", text)
        return InitSource(entry=text, config=ref)
    file = Path(text)
    if not file.exists():
        raise fail(
            path,
            "expected a .safetensors file, a trial folder of an earlier run or the name of a "
            f"grid entry ({', '.join(entries)}); no such file",
            text,
        )
    weights = _weights_file(file)
    if not weights.is_file():
        raise fail(path, f"{file} is a folder without model.safetensors", text)
    return InitSource(file=weights)


def _check_point(point: Any, source: InitSource, path: str, text: str) -> None:
    config = point.config
    family = config.model_kind.family
    if config.ensemble is not None or config.pretrain is not None or family == "language":
        what = (
            "ensemble" if config.ensemble is not None
            else "pretrain" if config.pretrain is not None
            else f"model.kind = {config.model.kind!r}"
        )  # fmt: skip
        raise fail(path, f"cannot be combined with {what}", text)
    if source.config is not None:
        ref = source.config
        if ref.model_kind.user_code or config.model_kind.user_code:
            same = ref.model.to_dict() == config.model.to_dict()
            if not same:
                raise fail(path, f"grid entry {source.entry!r} builds another model", text)
            return
        difference = shape_difference(_meta_shapes(ref), _meta_shapes(config), "its network")
        if difference is not None:
            message = f"grid entry {source.entry!r} builds another network: {difference}"
            raise fail(path, message, text)
        return
    assert source.file is not None
    try:
        found = file_shapes(source.file)
    except ValueError as err:
        raise fail(path, f"{source.file}: {err}", text) from None
    if config.model_kind.user_code:  # a factory is built only when its trial starts
        return
    difference = shape_difference(found, _meta_shapes(config), source.file.name)
    if difference is not None:
        raise fail(path, difference, text)


def check_study(raw: Mapping[str, Any], points: Sequence[Any], origin: str) -> tuple[Any, ...]:
    """Check every point's ``train.init`` (see the module docstring); returns the points,
    those with an ``init`` carrying it parsed (``config.init_source``)."""
    import dataclasses

    grid = raw.get("grid") or []
    index = {e.get("name"): i for i, e in enumerate(grid) if isinstance(e, Mapping)}
    entries: dict[str, list[Any]] = {}
    for p in points:
        entries.setdefault(p.entry, []).append(p)
    out = []
    for point in points:
        text = point.config.train.init
        if not text:
            out.append(point)
            continue
        i = index.get(point.entry)
        own = grid[i].get("train") if i is not None else None
        path = (
            f"{origin}.grid[{i}].train.init"
            if isinstance(own, Mapping) and "init" in own
            else f"{origin}.train.init"
        )
        source = init_source(text, path, entries, point.entry)
        _check_point(point, source, path, text)
        if source.config is not None:
            _WANTED.add(config_id(source.config))
        config = dataclasses.replace(point.config, init_source=source)
        out.append(dataclasses.replace(point, config=config))
    return tuple(out)
