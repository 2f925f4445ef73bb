"""Moved to :mod:`reglab.lab.work.runner`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.work.runner")
