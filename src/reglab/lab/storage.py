"""Moved to :mod:`reglab.lab.sweep.storage`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.sweep.storage")
