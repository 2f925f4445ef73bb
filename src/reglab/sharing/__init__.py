"""Parameter sharing and tying: hard ties, L2-SP, multi-task and semi-supervised sharing.

Soft tying between two modules is ``reglab.penalties.ToReference`` pointed at the other
module's parameter (both are pulled together).
"""

from reglab.sharing.multitask import MultiTask, SemiSupervised, SemiSupervisedOutput
from reglab.sharing.tying import l2_sp, tie_weights

__all__ = ["MultiTask", "SemiSupervised", "SemiSupervisedOutput", "l2_sp", "tie_weights"]
