"""Optuna internals the lab uses where Optuna offers no public way.

* :func:`rdb_models`: ``optuna.storages._rdb.models`` (the RDB storage's SQLAlchemy tables:
  ``TrialModel``, ``TrialHeartbeatModel``), to find RUNNING trials that never had a heartbeat.
* :func:`study_id`: a study's row id in its storage (``Study._study_id``).
"""

from __future__ import annotations

from types import ModuleType

import optuna

__all__ = ["rdb_models", "study_id"]


def rdb_models() -> ModuleType:
    """``optuna.storages._rdb.models`` (imported on call: it needs SQLAlchemy)."""
    from optuna.storages._rdb import models

    return models


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage (``study._study_id``)."""
    return study._study_id
