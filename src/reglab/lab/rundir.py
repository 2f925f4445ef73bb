"""The run directory: every path a run keeps, in one place. Atomic writes only.

``runs/<study>-<timestamp>/`` (or any folder):

* ``study.toml``: the study file as run; ``study.json``: the document as parsed (overrides
  applied; authoritative); ``resolved.json``: every grid point with its parsed settings;
  ``run.json``: the record that makes the directory one study — the settings' content hash
  (:attr:`Study.fingerprint`) and the settings themselves, the command-line overrides, and
  the name of the Optuna study in the storage. A resume checks ``study.json`` and
  ``study.toml`` (with the overrides) against it and refuses either file edited, naming
  what changed;
* ``storage.db``: the SQLite Optuna storage (unless ``--storage`` points elsewhere), which
  holds every result (``storage.db.lock``: the lock its schema and study are created under;
  ``storage.db.damaged-<time>``: one set aside by ``--rebuild-storage``);
* ``trials/<key>/history.csv``, ``metrics.json`` (strict JSON: a non-finite value is null and
  named under ``nonfinite``), ``model.safetensors``: files of the trials run on this machine;
  ``trials/<key>/diverged.json`` instead, for a trial whose training diverged;
* ``report.html``, ``summary.md`` and the figures (``*.png``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from reglab._io import atomic_write, atomic_write_json, atomic_write_text
from reglab.lab.settings.data import anchor
from reglab.lab.settings.init import resolve_paths as resolve_init_paths
from reglab.lab.settings.schema import StudyError
from reglab.lab.settings.studyfile import Overrides, Study, changes, parse_study, read_toml
from reglab.lab.work.training import TrialOutcome

__all__ = ["CheckpointError", "RunDir", "RunDirEdited"]


class RunDirEdited(ValueError):
    """A run directory's study files no longer say what its run began with."""


class RunDir:
    """A run directory (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------------------
    @property
    def study_json(self) -> Path:
        return self.path / "study.json"

    @property
    def study_toml(self) -> Path:
        return self.path / "study.toml"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def resolved_json(self) -> Path:
        return self.path / "resolved.json"

    @property
    def storage_db(self) -> Path:
        return self.path / "storage.db"

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.storage_db.resolve()}"

    def trial_dir(self, key: str) -> Path:
        return self.path / "trials" / key

    def trial_file(self, key: str, name: str) -> Path:
        """``history.csv``, ``metrics.json`` or ``model.safetensors`` of trial ``key``."""
        return self.trial_dir(key) / name

    def output(self, name: str) -> Path:
        """A report file: ``report.html``, ``summary.md`` or a figure."""
        return self.path / name

    # -- the study -----------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.study_json.is_file()

    def write_study(
        self,
        study: Study,
        source_text: str,
        overrides: Overrides | None = None,
        optuna_study: str | None = None,
        max_trials: int | None = None,
        toml_root: str | Path | None = None,
    ) -> None:
        """Record the study as run: ``study.json``, ``study.toml``, ``resolved.json`` and
        ``run.json`` (``optuna_study``: the name of its Optuna study; ``max_trials``: the cap
        it was parsed under; ``toml_root``: when ``source_text`` is the study file itself,
        its folder — ``[data]`` paths are relative to it — and ``study.toml`` is checked on
        resume; ``""`` for a built-in study; None: ``study.toml`` is only a note). Starting a
        run in a directory that holds another study (or the same with other ``--epochs`` /
        ``--seeds``) is refused."""
        document = json.loads(json.dumps(study.source, default=str))
        if self.is_run():
            record = self.record()
            same = (
                record["fingerprint"] == study.fingerprint
                if record is not None
                else self._document() == document
            )
            if not same:
                raise ValueError(
                    f"{self.path} holds a run of a different study (or other --epochs/--seeds); "
                    "resume it with `reglab run --resume` or choose another --out directory."
                )
        overrides = overrides or Overrides()
        atomic_write_json(self.study_json, document)
        atomic_write_text(self.study_toml, source_text)
        atomic_write_json(
            self.resolved_json,
            [
                {"key": p.key, "label": p.label, "params": p.params, "config": p.config.to_dict()}
                for p in study.points
            ],
        )
        self._write_record(study, overrides, optuna_study, max_trials, toml_root)

    def _write_record(
        self,
        study: Study,
        overrides: Overrides,
        optuna_study: str | None,
        max_trials: int | None,
        toml_root: str | Path | None = None,
    ) -> None:
        atomic_write_json(
            self.run_json,
            {
                "fingerprint": study.fingerprint,
                "settings": study.settings(),
                "overrides": {"epochs": overrides.epochs, "seeds": overrides.seeds},
                "optuna_study": optuna_study,
                "max_trials": max_trials,
                "toml_root": None if toml_root is None else str(toml_root),
            },
        )

    def record(self) -> dict[str, Any] | None:
        """``run.json`` (None for a run directory made before it existed)."""
        if not self.run_json.is_file():
            return None
        record = _read_json(self.run_json)
        wanted = {"fingerprint": str, "settings": dict, "overrides": dict}
        if not isinstance(record, dict) or any(
            not isinstance(record.get(k), t) for k, t in wanted.items()
        ):
            raise StudyError(
                f"{self.run_json}: not a run record (expected an object with "
                f"{', '.join(wanted)}); was it edited?"
            )
        return record

    @property
    def optuna_study(self) -> str | None:
        """The name of the run's Optuna study as recorded (None: not recorded)."""
        record = self.record()
        name = record.get("optuna_study") if record is not None else None
        return name if isinstance(name, str) else None

    def _document(self) -> dict[str, Any]:
        raw = _read_json(self.study_json)
        if not isinstance(raw, dict):
            raise StudyError(
                f"{self.study_json}: expected a JSON object (a study document), got "
                f"{type(raw).__name__}; restore it from study.toml or start a new run"
            )
        return raw

    def study(self, max_trials: int | None = None) -> Study:
        """The study this directory ran, parsed from ``study.json`` (under the cap recorded
        in ``run.json``); every error names the file."""
        if not self.is_run():
            raise FileNotFoundError(f"{self.path} is not a reglab run directory (no study.json)")
        raw = self._document()
        record = self.record()
        if max_trials is None and record is not None:
            max_trials = record.get("max_trials")
        name = raw.get("name")
        try:
            # As run: a run from before the default-validation rule keeps its settings.
            return parse_study(
                raw, name if isinstance(name, str) else "study", selection=False, **_cap(max_trials)
            )
        except StudyError as err:
            raise StudyError(f"{self.study_json}: {err}") from None

    def verify(self, study: Study, optuna_study: str | None = None) -> None:
        """Check that ``study`` (parsed from ``study.json``) and ``study.toml`` (with the
        recorded overrides) are still what the run began with; :class:`RunDirEdited` names
        the file and what changed. A run directory from before ``run.json`` gets one now,
        recording ``study`` (and ``optuna_study``)."""
        record = self.record()
        if record is None:
            overrides = Overrides()
            self._write_record(study, overrides, optuna_study, None)
            return
        self._same(self.study_json, record, study)
        root = record.get("toml_root")
        if isinstance(root, str) and self.study_toml.is_file():
            overrides = Overrides(**{k: record["overrides"].get(k) for k in ("epochs", "seeds")})
            raw, _ = read_toml(self.study_toml)
            if root:  # [data] and [train] init paths, as when the run began
                raw = resolve_init_paths(anchor(raw, root), root)
            try:
                toml_study = parse_study(
                    overrides.apply(raw), study.name, **_cap(record.get("max_trials"))
                )
            except StudyError as err:
                raise RunDirEdited(
                    f"{self.study_toml} was edited since the run began and no longer parses "
                    f"({err}); restore it"
                ) from None
            self._same(self.study_toml, record, toml_study)

    @staticmethod
    def _same(path: Path, record: Mapping[str, Any], study: Study) -> None:
        if study.fingerprint == record["fingerprint"]:
            return
        what = "; ".join(changes(record["settings"], study.settings())) or "settings differ"
        raise RunDirEdited(
            f"{path} was edited since the run began ({what}); a run directory holds one "
            "study: restore the file, or start a new run with --out"
        )

    # -- trials --------------------------------------------------------------------------
    def save_trial(self, key: str, outcome: TrialOutcome, metrics: dict[str, Any]) -> None:
        """The trial's ``history.csv``, ``model.safetensors`` and (last) ``metrics.json``;
        ``metrics`` as stored (strict JSON: :func:`reglab.lab.metrics.strict_metrics`)."""
        from safetensors.torch import save

        self.trial_file(key, "diverged.json").unlink(missing_ok=True)

        rows = outcome.history
        buffer = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.trial_file(key, "history.csv"), buffer.getvalue())
        state, tied = _unique_tensors(outcome.model.state_dict())
        payload = _sorted_metadata(save(state, metadata={"trial": key, "tied": json.dumps(tied)}))
        atomic_write(self.trial_file(key, "model.safetensors"), lambda f: f.write(payload))
        # Written last: its presence means the trial's files are complete.
        atomic_write_json(self.trial_file(key, "metrics.json"), metrics)

    def save_divergence(self, key: str, reason: str) -> None:
        """``trials/<key>/diverged.json``: the trial stopped on a non-finite value."""
        atomic_write_json(self.trial_file(key, "diverged.json"), {"diverged": reason})

    def weights(
        self, key: str, expected: Mapping[str, Sequence[int]] | None
    ) -> dict[str, Any] | None:
        """Trial ``key``'s saved tensors as numpy arrays, or None when it was not saved here.

        ``expected`` is ``{name: shape}`` of the trial's model as stored with its results;
        a file that is unreadable, or whose names and shapes differ from it (another
        architecture's checkpoint, a file from an older run), raises :class:`CheckpointError`
        naming the file and the first difference. No model is built to check it."""
        from safetensors import safe_open
        from safetensors.numpy import load_file

        path = self.trial_file(key, "model.safetensors")
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as f:
                tied = json.loads((f.metadata() or {}).get("tied", "{}"))
                found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error type for bad files
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
        if expected is None:
            raise CheckpointError(f"{path}: the results hold no record of its model to check it")
        wanted = {n: tuple(shape) for n, shape in expected.items() if n not in tied}
        if found != wanted:
            raise CheckpointError(f"{path}: not the trial's model ({_difference(found, wanted)})")
        return load_file(str(path))

    def finished_trials(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """What the trial folders hold of finished trials, to rebuild a lost storage:
        ``{key: {"metrics", "history", "tensors"}}`` for each trial whose files are complete
        (``metrics.json`` is written last), ``{key: {"diverged": reason}}`` for diverged
        ones (reliability bins live only in the storage) — and one ``"path: why"`` for every
        file of a finished trial that cannot be read (that trial is left out). Reads only."""
        out: dict[str, dict[str, Any]] = {}
        unreadable: list[str] = []
        folder = self.path / "trials"
        for trial in sorted(folder.iterdir()) if folder.is_dir() else ():
            try:
                found = _finished(trial)
            except _Unreadable as err:
                unreadable.append(str(err))
                continue
            if found is not None:
                out[trial.name] = found
        return out, unreadable

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a process killed mid-write; returns how many."""
        stale = list(self.path.rglob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


class _Unreadable(Exception):
    """``path: why`` of a trial file that cannot be read."""


def _finished(trial: Path) -> dict[str, Any] | None:
    """A trial folder's record of a finished trial, None when it holds none (unfinished)."""
    from safetensors import safe_open

    if (trial / "diverged.json").is_file():
        record = _trial_json(trial / "diverged.json")
        if not isinstance(record, dict) or not isinstance(record.get("diverged"), str):
            raise _Unreadable(f'{trial / "diverged.json"}: expected {{"diverged": reason}}')
        return record
    metrics_file, weights = trial / "metrics.json", trial / "model.safetensors"
    if not (metrics_file.is_file() and weights.is_file()):
        return None
    metrics = _trial_json(metrics_file)
    if not isinstance(metrics, dict):
        raise _Unreadable(f"{metrics_file}: expected a JSON object of metrics")
    try:
        with safe_open(str(weights), framework="numpy") as f:
            tied = json.loads((f.metadata() or {}).get("tied", "{}"))
            tensors = {n: list(f.get_slice(n).get_shape()) for n in f.keys()}  # noqa: SIM118
        tensors.update({dropped: tensors[kept] for dropped, kept in tied.items()})
    except Exception as err:  # safetensors raises its own error type for bad files
        raise _Unreadable(f"{weights}: not a readable safetensors file ({err})") from None
    history_file = trial / "history.csv"
    try:
        rows = (
            list(csv.DictReader(io.StringIO(history_file.read_text(encoding="utf-8"))))
            if history_file.is_file()
            else []
        )
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _Unreadable(f"{history_file}: {err}") from None
    return {
        "metrics": metrics,
        "history": [{k: _number(v) for k, v in row.items()} for row in rows],
        "tensors": tensors,
    }


def _trial_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise _Unreadable(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise _Unreadable(f"{path}: {err}") from None


def _read_json(path: Path) -> Any:
    """A JSON file's value; errors name the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StudyError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise StudyError(f"{path}: nested too deeply to be a study") from None


def _cap(max_trials: Any) -> dict[str, Any]:
    return {"max_trials": max_trials} if isinstance(max_trials, int) else {}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):  # a short row's missing cell is None
        return None
    return value if math.isfinite(value) else None


class CheckpointError(ValueError):
    """A trial's checkpoint cannot be read, or does not belong to the trial's model."""


def _difference(found: dict[str, tuple[int, ...]], wanted: dict[str, tuple[int, ...]]) -> str:
    for name, shape in wanted.items():
        if name not in found:
            return f"it lacks {name}"
        if found[name] != shape:
            return f"{name} is {found[name]}, the model's is {shape}"
    extra = sorted(set(found) - set(wanted))
    return f"it has {extra[0]}, which the model has not"


def _unique_tensors(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``state`` with each shared tensor stored once (tied weights, e.g. a language model's
    decoder and embedding; safetensors refuses aliases), and ``{dropped name: kept name}``."""
    kept: dict[tuple[int, torch.Size, tuple[int, ...]], str] = {}
    unique, tied = {}, {}
    for name, tensor in state.items():
        ident = (tensor.data_ptr(), tensor.shape, tensor.stride())
        if tensor.numel() and ident in kept:
            tied[name] = kept[ident]
            continue
        kept[ident] = name
        unique[name] = tensor.detach().cpu().contiguous()
    return unique, tied


def _sorted_metadata(payload: bytes) -> bytes:
    """``payload`` (a safetensors file) with its header's ``__metadata__`` keys sorted.

    safetensors writes metadata in hash-map order, which changes from call to call; sorted,
    the same trial's weights are the same bytes. The format: an 8-byte little-endian header
    length, the JSON header (padded with spaces to a multiple of 8), then the data, whose
    offsets count from the data's start (so the header may change length)."""
    length = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + length])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + payload[8 + length :]
