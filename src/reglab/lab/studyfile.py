"""Moved to :mod:`reglab.lab.settings.studyfile`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.settings.studyfile")
