"""Moved to :mod:`reglab.lab.kinds.mlp`, :mod:`reglab.lab.kinds.factory`;
this old path re-exports them."""

from reglab.lab._moved import reexport

reexport(globals(), "reglab.lab.kinds.mlp", "reglab.lab.kinds.factory")
