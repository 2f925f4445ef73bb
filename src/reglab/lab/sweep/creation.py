"""The one step that creates (or joins) a run's Optuna study: under the storage's creation
lock, refused when a run's own storage holds another study, created or loaded, then completed
(enqueued) by the caller — repeated as a whole after a lost connection, so it is idempotent."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import optuna
from optuna.storages import RDBStorage

from reglab.lab.sweep.database import creation_lock, retrying
from reglab.lab.sweep.storage import shown

__all__ = ["StorageMismatch", "create_once"]

T = TypeVar("T")


class StorageMismatch(ValueError):
    """A run's storage holds the sweep of another study."""


def create_once(
    storage: RDBStorage,
    storage_url: str,
    name: str,
    db_retry: float,
    alone: bool,
    create: Callable[[], optuna.Study],
    load: Callable[[], optuna.Study],
    complete: Callable[[optuna.Study], T],
) -> T:
    """``complete(study)`` of the Optuna study ``name``: ``create()``d, or ``load()``ed when
    another process created it, all under the creation lock. ``alone``: the storage belongs to
    one run directory; one holding another study raises :class:`StorageMismatch`."""

    def step() -> T:
        with creation_lock(storage_url, f"reglab:study:{name}", db_retry):
            others = [s.study_name for s in storage.get_all_studies() if s.study_name != name]
            if alone and others:
                raise StorageMismatch(
                    f"{shown(storage_url)} holds the sweep of another study ({others[0]}), "
                    f"not of this one ({name}): a run's storage holds one study; was its "
                    "study.json edited? Restore it, or start a new run with --out"
                )
            try:
                study = create()
            except optuna.exceptions.DuplicatedStudyError:
                study = load()
            return complete(study)

    # Under the lock, a repeat after a lost connection is safe: complete() enqueues what is
    # missing.
    return retrying(step, seconds=db_retry, url=storage_url)
