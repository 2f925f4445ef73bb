"""Parameter sharing and tying: hard ties, L2-SP, multi-task and semi-supervised sharing, and
consistency regularization (mean teacher, Π-model).

Soft tying between two modules is ``reglab.penalties.ToReference`` pointed at the other
module's parameter (both are pulled together).
"""

from reglab.sharing.consistency import MeanTeacher, PiModel, sigmoid_ramp_up
from reglab.sharing.multitask import MultiTask, SemiSupervised, SemiSupervisedOutput
from reglab.sharing.tying import l2_sp, tie_weights

__all__ = [
    "MeanTeacher",
    "MultiTask",
    "PiModel",
    "SemiSupervised",
    "SemiSupervisedOutput",
    "l2_sp",
    "sigmoid_ramp_up",
    "tie_weights",
]
