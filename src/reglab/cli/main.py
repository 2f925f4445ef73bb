"""Entry point of the ``reglab`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reglab import __version__
from reglab._optional import MissingExtraError, require

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    # The command line is the lab's: it needs the lab extra (rich, Optuna, ...).
    require("rich", "reglab's command line")
    require("optuna", "reglab's command line")
    from reglab.cli import data, report, run, studies, worker
    from reglab.cli.studies import Show

    # Each subcommand module provides NAME, HELP, add_arguments(parser) and run(args) -> int.
    subcommands = (run, worker, studies, Show, report, data)
    parser = argparse.ArgumentParser(
        prog="reglab", description="Regularization for PyTorch, and a lab that measures it."
    )
    parser.add_argument("--version", action="version", version=f"reglab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in subcommands:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(p)
        p.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    try:
        parser = _parser()
    except MissingExtraError as err:
        print(f"reglab: {err}", file=sys.stderr)
        return 2
    from reglab.lab.sweep import RunDirBusy

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("reglab: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, RunDirBusy, TimeoutError, ImportError) as err:
        # reglab raises InvalidParameterError (ValueError+TypeError) for bad input.
        if args.debug:
            raise
        print(f"reglab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: say so in one line; --debug shows the traceback
        if args.debug:
            raise
        print(
            f"reglab {args.command}: internal error ({type(err).__name__}: {err}); please "
            "report it with the output of the same command run with --debug",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
