"""reglab: regularization for PyTorch, done right, and a lab that measures what it does.

>>> import reglab
>>> from reglab.penalties import L2
>>> from torch import nn
>>> reg = reglab.attach(nn.Linear(3, 2), {"": dict(kernel=L2(1e-4))})
"""

from importlib.metadata import PackageNotFoundError, version

from reglab import constraints, penalties
from reglab._validation import InvalidParameterError
from reglab.optim import param_groups, proximal_l1
from reglab.regularization import Regularization, attach
from reglab.schedules import schedule

try:
    __version__ = version("reglab")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "InvalidParameterError",
    "Regularization",
    "__version__",
    "attach",
    "constraints",
    "param_groups",
    "penalties",
    "proximal_l1",
    "schedule",
]
