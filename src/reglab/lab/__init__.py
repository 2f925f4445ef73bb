"""The lab: studies as TOML files, sweeps on Optuna, run directories, reports.

Needs the ``lab`` extra (``pip install 'reglab[lab]'``)."""

from reglab._optional import require

require("optuna", "reglab.lab")

from reglab.lab import _moved
from reglab.lab.catalog import builtin_studies, expand, find_study, trials
from reglab.lab.kinds.language import LSTMLanguageModel
from reglab.lab.kinds.mlp import mlp
from reglab.lab.python_api import StudyResult, run_study
from reglab.lab.report import coefficient_series, curves, summarize, write_report
from reglab.lab.rundir import RunDir
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import load_data
from reglab.lab.settings.grid import GridPoint, Trial
from reglab.lab.settings.studyfile import Overrides, Study, StudyError, load_study, parse_study
from reglab.lab.sweep import Sweep
from reglab.lab.trust import Trust, UntrustedCode
from reglab.lab.work.runner import run_trial
from reglab.lab.work.training import TrialOutcome

_moved.install()  # the old module paths (reglab.lab.config, ...) keep importing

__all__ = [
    "GridPoint",
    "LSTMLanguageModel",
    "Overrides",
    "RunDir",
    "Study",
    "StudyError",
    "StudyResult",
    "Sweep",
    "Trial",
    "TrialConfig",
    "TrialOutcome",
    "Trust",
    "UntrustedCode",
    "builtin_studies",
    "coefficient_series",
    "curves",
    "expand",
    "find_study",
    "load_data",
    "load_study",
    "mlp",
    "parse_study",
    "run_study",
    "run_trial",
    "summarize",
    "trials",
    "write_report",
]
