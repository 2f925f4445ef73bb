"""The lab: studies that train models with and without regularizers and report what happened."""

from reglab.lab.default_study import DEFAULT_GRID, Row, run_default_study, summarize
from reglab.lab.models import mlp
from reglab.lab.trial import TrialResult, train_classifier

__all__ = [
    "DEFAULT_GRID",
    "Row",
    "TrialResult",
    "mlp",
    "run_default_study",
    "summarize",
    "train_classifier",
]
