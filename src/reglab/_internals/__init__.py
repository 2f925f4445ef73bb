"""The private torch and Optuna internals reglab relies on, each reached from one small module
(:mod:`reglab._internals.torch`, :mod:`reglab._internals.optuna`, and
:mod:`reglab._internals.compat` for what moved between the torch versions reglab has run on),
with a test per internal (tests/test_internals.py, tests/test_compat.py) so that an upgrade that
moves one fails there, loudly, in one place."""
