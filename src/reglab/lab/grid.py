"""Moved to :mod:`reglab.lab.settings.grid`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.settings.grid")
