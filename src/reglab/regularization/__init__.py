"""Attach penalties and constraints to existing modules: ``attach`` and its handle."""

from reglab.regularization.attaching import attach
from reglab.regularization.handle import Regularization

__all__ = ["Regularization", "attach"]
