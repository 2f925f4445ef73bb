"""Attach penalties and constraints to existing modules: ``attach`` and its handle."""

from reglab.regularization.attaching import attach
from reglab.regularization.handle import Regularization
from reglab.regularization.tracking import ModelChangedError

__all__ = ["ModelChangedError", "Regularization", "attach"]
