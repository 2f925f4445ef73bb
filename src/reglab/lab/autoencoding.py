"""Moved to :mod:`reglab.lab.kinds.autoencoder`; this old path re-exports it."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.kinds.autoencoder")
