"""The run directory: resolved study, storage, per-trial files, report. Atomic writes only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reglab._io import atomic_write, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from reglab.lab.runner import TrialOutcome

__all__ = ["RunDir"]


class RunDir:
    """``runs/<study>-<timestamp>/`` (or any folder):

    * ``study.toml``: the study file as run; ``resolved.json``: its expanded grid;
    * ``storage.db``: the SQLite Optuna storage (unless ``--storage`` points elsewhere);
    * ``trials/<key>/history.csv``, ``metrics.json``, ``model.safetensors``;
    * ``report.html``, ``summary.md``, ``*.png``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.path / 'storage.db').resolve()}"

    def write_study(self, raw: dict[str, Any], source_text: str, resolved: Any) -> None:
        """Record the study as run. ``study.json`` (the effective document, overrides applied)
        is authoritative: resuming into a directory that holds another study is refused."""
        previous = self.path / "study.json"
        if previous.is_file() and json.loads(previous.read_text()) != json.loads(
            json.dumps(raw, default=str)
        ):
            raise ValueError(
                f"{self.path} holds a run of a different study (or other --epochs/--seeds); "
                "resume with the same settings or choose another --out directory."
            )
        atomic_write_json(previous, raw)
        atomic_write_text(self.path / "study.toml", source_text)
        atomic_write_json(self.path / "resolved.json", resolved)

    def study_raw(self) -> dict[str, Any]:
        path = self.path / "study.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} is not a reglab run directory (no study.json)")
        return json.loads(path.read_text())

    def save_trial(self, key: str, outcome: TrialOutcome) -> None:
        from safetensors.torch import save

        folder = self.path / "trials" / key
        rows = outcome.history
        buffer = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(folder / "history.csv", buffer.getvalue())
        state, tied = _unique_tensors(outcome.model.state_dict())
        payload = save(state, metadata={"trial": key, "tied": json.dumps(tied)})

        atomic_write(folder / "model.safetensors", lambda f: f.write(payload))
        atomic_write_json(folder / "metrics.json", outcome.metrics)  # written last: "done"

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
