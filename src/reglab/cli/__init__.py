"""The ``reglab`` command line: small subcommands, one-line errors, exit code 2 for user mistakes."""

from reglab.cli.main import main

__all__ = ["main"]
