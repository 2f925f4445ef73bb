"""The lab from Python: :func:`run_study` runs a study's sweep on your data and your model.

The same sweep as ``reglab run`` (one Optuna trial per grid point and seed, a run directory,
a report), with two things a study file cannot say:

* ``data``: arrays or tensors in memory — an ``(x, y)`` pair, a ``torch.utils.data.Dataset``
  of ``(x, y)`` items, or a dict of splits ``{"train": (x, y), "test": (x, y)}``. They are
  written to the run directory as ``data.npz`` (``data-test.npz``) and read back as
  ``[data] format = "npz"``, so they pass the same checks, and ``reglab report`` and
  ``--resume`` find them later.
* ``model``: a callable, called like a factory (:mod:`reglab.lab.trust`):
  ``model(features=F, classes=C, image_shape=(C, H, W) or None, **options)`` returns an
  ``nn.Module``. It is your own code object, so no trust flag is needed.

Every check runs before the run directory is created: a study, data or model that fails
leaves nothing behind.

>>> import torch
>>> from torch import nn
>>> x, y = torch.randn(200, 8), torch.arange(200) % 2
>>> from reglab.lab import mlp
>>> def net(features, classes, image_shape=None):  # layers fc0, act0, fc1: the default rules
...     return mlp([features, 32, classes])
>>> result = run_study("default", data=(x, y), model=net, out=tmp / "run")  # doctest: +SKIP
>>> len(result.records), result.run_dir.path.name  # doctest: +SKIP
(24, 'run')
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.utils.data

from reglab._validation import InvalidParameterError
from reglab.lab.catalog import builtin_studies, find_study
from reglab.lab.report import write_report
from reglab.lab.rundir import RunDir
from reglab.lab.settings.data import SOURCE_KEYS
from reglab.lab.settings.studyfile import Study, StudyError, parse_study
from reglab.lab.sweep import DirectoryLock, Sweep
from reglab.lab.trust import Trust, provide
from reglab.lab.work.device import DeviceError, parse_device
from reglab.lab.work.device import check_study as check_study_device
from reglab.lab.work.training import TrialContext

__all__ = ["StudyResult", "run_study"]

#: The keys a dict of splits may have.
SPLITS = ("train", "test")


class StudyResult(NamedTuple):
    """What :func:`run_study` returns: ``records`` (one dict per finished trial, as
    :meth:`reglab.lab.Sweep.results` gives them: key, label, seed, params, metrics, history,
    ...) and the :class:`~reglab.lab.RunDir`. ``records, run_dir = run_study(...)`` works."""

    records: list[dict[str, Any]]
    run_dir: RunDir

    @property
    def report(self) -> Path:
        """The run's ``report.html``."""
        return self.run_dir.output("report.html")


def run_study(
    study: str | Path | Study = "default",
    *,
    data: Any = None,
    model: Any = None,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
) -> StudyResult:
    """Run ``study``'s sweep in this process and write its report; returns the
    :class:`StudyResult`.

    ``study`` is a path to a study file, a built-in study's name, or a parsed
    :class:`~reglab.lab.Study`. ``data`` (optional) replaces the study's data source (its
    ``validation``, ``subset``, ``standardize`` and ``labels`` stay): an ``(x, y)`` pair of
    tensors or arrays (``x`` of shape ``(N, features)``, or ``(N, H, W)`` / ``(N, C, H, W)``
    images; ``y`` integer labels ``(N,)``; the test rows are a seeded stratified split), a
    ``torch.utils.data.Dataset`` of ``(x, y)`` items, or ``{"train": ..., "test": ...}``
    with either kind as values. ``model`` (optional) replaces the study's ``[model]`` by a
    factory: ``model(features=..., classes=..., image_shape=..., **options)`` -> ``nn.Module``
    (``options`` are the study's ``[model] options`` when it names a factory). ``out`` is the
    run directory (default ``runs/<study>-<time>``); a directory that holds a run of the same
    study is resumed. ``device``: where every trial trains, as ``reglab run --device``:
    ``None`` or ``"cpu"`` (deterministic), ``"auto"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
    ``torch.device`` (:mod:`reglab.lab.work.device`); one this machine lacks is refused.

    Raises :class:`~reglab.lab.StudyError` (or another
    :class:`~reglab._validation.InvalidParameterError`) naming the problem before the run
    directory is created.
    """
    where = _check_device(device)
    document, origin = _document(study)
    with contextlib.ExitStack() as stack:
        if model is not None:
            factory = stack.enter_context(provide(model))
            document = _with_model(document, factory)
        staged = None
        if data is not None:
            staged = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reglab-data-")))
            document = _with_data(document, _write_arrays(data, staged))
        parsed = _parse(document, origin, staged)  # every check of the data and the settings
        trust = Trust.of(None)  # REGLAB_TRUST_FACTORIES; a model given here needs none
        trust.check(parsed)
        try:
            check_study_device(parsed, where)  # fp16 on the CPU
        except DeviceError as err:
            raise InvalidParameterError(f"The 'device' parameter of run_study: {err}.") from None
        run_dir = RunDir(out or Path("runs") / f"{parsed.name}-{datetime.now():%Y%m%d-%H%M%S}")
        if staged is not None:  # the data become part of the run's record
            document = _with_data(document, _paths(run_dir.path, staged))
            parsed = dataclasses.replace(parsed, source=copy.deepcopy(document))
        _check_run_dir(run_dir, parsed, staged)
        run_dir.path.mkdir(parents=True, exist_ok=True)
        if staged is not None:
            for file in staged.iterdir():
                shutil.copyfile(file, run_dir.path / file.name)
            parsed = parse_study(document, origin)  # now reading the run directory's copy
        return _run(parsed, run_dir, trust, where)


def _parse(document: dict[str, Any], origin: str, staged: Path | None) -> Study:
    """``parse_study``; errors about data given in memory name it, not its staging file."""
    try:
        return parse_study(document, origin)
    except StudyError as err:
        if staged is None:
            raise
        message = str(err)
        for name, said in (("data.npz", "the data"), ("data-test.npz", "the test data")):
            message = message.replace(str(staged / name), f"{said} given to run_study")
        raise StudyError(message) from None


def _check_run_dir(run_dir: RunDir, study: Study, staged: Path | None) -> None:
    """``out`` may be new, empty, or a run of the same study on the same data (resumed)."""
    where = "The 'out' parameter of run_study"
    if run_dir.path.exists() and not run_dir.path.is_dir():
        raise InvalidParameterError(f"{where}: {run_dir.path} exists and is not a directory.")
    if not run_dir.is_run():
        if run_dir.path.is_dir() and any(run_dir.path.iterdir()):
            raise InvalidParameterError(
                f"{where}: {run_dir.path} is not empty and holds no run; choose another folder."
            )
        return
    recorded = json.loads(run_dir.study_json.read_text())
    if recorded != json.loads(json.dumps(study.source, default=str)):
        raise InvalidParameterError(
            f"{where}: {run_dir.path} holds a run of a different study; choose another folder."
        )
    for file in staged.iterdir() if staged is not None else ():
        kept = run_dir.path / file.name
        if not kept.is_file() or kept.read_bytes() != file.read_bytes():
            raise InvalidParameterError(
                f"{where}: {run_dir.path} holds a run of this study on other data; choose "
                "another folder."
            )


def _check_device(device: Any) -> torch.device:
    """``device`` parsed (:func:`~reglab.lab.work.device.parse_device`); errors name it."""
    if device is None:
        return torch.device("cpu")
    try:
        return parse_device(str(device))
    except DeviceError as err:
        raise InvalidParameterError(f"The 'device' parameter of run_study: {err}.") from None


def _document(study: str | Path | Study) -> tuple[dict[str, Any], str]:
    """The study as a document (paths already absolute) and its name for key paths."""
    if isinstance(study, Study):
        return copy.deepcopy(study.source), study.name
    if not isinstance(study, (str, Path)):
        raise InvalidParameterError(
            "The 'study' parameter of run_study must be a study file path, a built-in study "
            f"name or a parsed Study. Got {study!r} instead."
        )
    _, document, _ = find_study(str(study))
    origin = str(study) if str(study) in builtin_studies() else Path(study).stem
    return copy.deepcopy(document), origin


def _with_model(document: dict[str, Any], factory: str) -> dict[str, Any]:
    """``document`` whose ``[model]`` is the given factory (a factory's options kept)."""
    model = document.get("model") or {}
    options = model.get("options", {}) if model.get("kind") == "factory" else {}
    return {**document, "model": {"kind": "factory", "factory": factory, "options": options}}


def _with_data(document: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """``document`` whose ``[data]`` reads ``files`` (``format = "npz"``); the lab's own keys
    (``validation``, ...) are kept."""
    data = document.get("data") or {}
    kept = {k: v for k, v in data.items() if k in SOURCE_KEYS}
    return {**document, "data": {"format": "npz", **files, **kept}}


def _paths(folder: Path, staged: Path) -> dict[str, str]:
    found = {"path": str((folder / "data.npz").resolve())}
    if (staged / "data-test.npz").is_file():
        found["test_path"] = str((folder / "data-test.npz").resolve())
    return found


def _write_arrays(data: Any, folder: Path) -> dict[str, str]:
    """Write ``data`` as ``data.npz`` (and ``data-test.npz``) with arrays ``x`` and ``y``;
    returns the ``[data]`` paths."""
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - set(SPLITS))
        if unknown or "train" not in data:
            raise InvalidParameterError(
                "The 'data' parameter of run_study, as a dict of splits, must have the key "
                f"'train' and optionally 'test' (validation rows are the study's [data] "
                f"validation fraction of train). Got keys {sorted(data)} instead."
            )
        splits = {name: _arrays(data[name], f"data[{name!r}]") for name in data}
    else:
        splits = {"train": _arrays(data, "data")}
    for name, (x, y) in splits.items():
        file = folder / ("data.npz" if name == "train" else "data-test.npz")
        np.savez(file, x=x, y=y)
    return _paths(folder, folder)


def _arrays(value: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as numpy arrays from a pair or a Dataset of pairs."""
    if isinstance(value, torch.utils.data.Dataset) and not isinstance(value, (tuple, list)):
        try:
            items = [value[i] for i in range(len(value))]  # type: ignore[arg-type]
        except TypeError:
            raise InvalidParameterError(
                f"The {where!r} Dataset of run_study must have a length and items by index."
            ) from None
        if not items or not all(isinstance(i, (tuple, list)) and len(i) == 2 for i in items):
            raise InvalidParameterError(
                f"The {where!r} Dataset of run_study must give (x, y) pairs (and at least one)."
            )
        xs = np.stack([_numpy(i[0], where) for i in items])
        ys = np.asarray([_numpy(i[1], where) for i in items])
        return xs, ys
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidParameterError(
            f"The {where!r} parameter of run_study must be an (x, y) pair of tensors or arrays, "
            f"a torch Dataset or a dict of splits. Got {type(value).__name__} instead."
        )
    return _numpy(value[0], where), _numpy(value[1], where)


def _numpy(value: Any, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise InvalidParameterError(
            f"The {where!r} parameter of run_study must hold numbers, not Python objects."
        )
    return array


def _run(study: Study, run_dir: RunDir, trust: Trust, device: torch.device) -> StudyResult:
    """The sweep of ``study`` in ``run_dir`` (created and checked), then its report."""
    lock = DirectoryLock(run_dir.path)
    try:
        run_dir.remove_partial_files()
        run_dir.write_study(study, _toml_note(study))
        sweep = Sweep.create(study, run_dir.storage_url)
        sweep.recover_local()
        with trust.active():
            sweep.work(run_dir, None, TrialContext(device=device))
        records = sweep.results()
        write_report(run_dir, study, records, len(sweep.trials))
        return StudyResult(records, run_dir)
    finally:
        lock.release()


def _toml_note(study: Study) -> str:
    """``study.toml`` of a run started from Python: the study as run is ``study.json``."""
    return (
        "# Started from Python (reglab.lab.run_study); the study as run is study.json.\n"
        f"# name = {study.name!r}\n"
    )
