"""Datasets that work offline: only data shipped inside installed packages."""

from reglab.data.digits import digits

__all__ = ["digits"]
