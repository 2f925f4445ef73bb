"""The run directory: every path a run keeps, in one place. Atomic writes only.

``runs/<study>-<timestamp>/`` (or any folder):

* ``study.toml``: the study file as run; ``study.json``: the document as parsed (overrides
  applied; authoritative); ``resolved.json``: every grid point with its parsed settings;
* ``storage.db``: the SQLite Optuna storage (unless ``--storage`` points elsewhere), which
  holds every result;
* ``trials/<key>/history.csv``, ``metrics.json``, ``model.safetensors``: files of the trials
  run on this machine;
* ``report.html``, ``summary.md`` and the figures (``*.png``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reglab._io import atomic_write, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from reglab.lab.studyfile import Study
    from reglab.lab.trial import TrialOutcome

__all__ = ["RunDir"]


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

    def write_study(self, study: Study, source_text: str) -> None:
        """Record the study as run. Starting a run in a directory that holds another study
        (or the same with other ``--epochs`` / ``--seeds``) is refused."""
        document = json.loads(json.dumps(study.source, default=str))
        if self.is_run() and json.loads(self.study_json.read_text()) != document:
            raise ValueError(
                f"{self.path} holds a run of a different study (or other --epochs/--seeds); "
                "resume it with `reglab run --resume` or choose another --out directory."
            )
        atomic_write_json(self.study_json, document)
        atomic_write_text(self.study_toml, source_text)
        atomic_write_json(
            self.resolved_json,
            [
                {"key": p.key, "label": p.label, "params": p.params, "config": p.config.to_dict()}
                for p in study.points
            ],
        )

    def study(self) -> Study:
        """The study this directory ran, parsed from ``study.json``."""
        from reglab.lab.studyfile import parse_study

        if not self.is_run():
            raise FileNotFoundError(f"{self.path} is not a reglab run directory (no study.json)")
        raw = json.loads(self.study_json.read_text())
        return parse_study(raw, raw.get("name", "study"))

    # -- trials --------------------------------------------------------------------------
    def save_trial(self, key: str, outcome: TrialOutcome) -> None:
        from safetensors.torch import save

        rows = outcome.history
        buffer = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.trial_file(key, "history.csv"), buffer.getvalue())
        state, tied = _unique_tensors(outcome.model.state_dict())
        payload = save(state, metadata={"trial": key, "tied": json.dumps(tied)})
        atomic_write(self.trial_file(key, "model.safetensors"), lambda f: f.write(payload))
        # Written last: its presence means the trial's files are complete.
        atomic_write_json(self.trial_file(key, "metrics.json"), outcome.metrics)

    def weights(self, key: str) -> dict[str, Any] | None:
        """Trial ``key``'s saved tensors as numpy arrays (None when not saved here)."""
        from safetensors.numpy import load_file

        path = self.trial_file(key, "model.safetensors")
        return load_file(str(path)) if path.is_file() else None

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a process killed mid-write; returns how many."""
        stale = list(self.path.rglob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


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
