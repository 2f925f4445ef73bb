"""The ``reglab`` command line: small subcommands; user mistakes print one line, exit 2."""

from reglab.cli.main import main

__all__ = ["main"]
