"""Moved to :mod:`reglab.lab.kinds.language`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.kinds.language")
