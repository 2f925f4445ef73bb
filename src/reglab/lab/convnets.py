"""Moved to :mod:`reglab.lab.kinds.convnets`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.kinds.convnets")
