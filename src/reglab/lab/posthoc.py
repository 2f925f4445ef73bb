"""Moved to :mod:`reglab.lab.work.posthoc`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.work.posthoc")
