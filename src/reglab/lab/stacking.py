"""Moved to :mod:`reglab.lab.work.stacking`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.work.stacking")
