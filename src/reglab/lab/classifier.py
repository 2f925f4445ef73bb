"""Moved to :mod:`reglab.lab.settings.techniques`, :mod:`reglab.lab.work.classifier`;
this old path re-exports them."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.settings.techniques", "reglab.lab.work.classifier")
