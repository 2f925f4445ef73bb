"""Training: a short ``fit`` loop, callbacks, and early stopping."""

from reglab.training.callbacks import Callback, TrainState
from reglab.training.divergence import Diverged
from reglab.training.early_stopping import EarlyStopping
from reglab.training.history import History
from reglab.training.metrics import accuracy
from reglab.training.tensorboard import TensorBoard
from reglab.training.trainer import Regularizer, fit

__all__ = [
    "Callback",
    "Diverged",
    "EarlyStopping",
    "History",
    "Regularizer",
    "TensorBoard",
    "TrainState",
    "accuracy",
    "fit",
]
