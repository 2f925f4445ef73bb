"""Moved to :mod:`reglab.lab.settings.train`, :mod:`reglab.lab.work.training`;
this old path re-exports them."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.settings.train", "reglab.lab.work.training")
