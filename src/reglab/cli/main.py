"""Entry point of the ``reglab`` console script.

Exit codes: 0 done; 1 the work ran but did not all succeed (or a bug, reported in one line;
``--debug`` shows the traceback); 2 a user error, reported in one line naming the argument,
option, study key or file; 128 + N interrupted by signal N (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from reglab import __version__
from reglab._optional import MissingExtraError, require

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``reglab run: error: argument --jobs: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    # The command line is the lab's: it needs the lab extra (rich, Optuna, ...).
    require("rich", "reglab's command line")
    require("optuna", "reglab's command line")
    from reglab.cli import data, report, run, studies, worker
    from reglab.cli.studies import Show

    # Each subcommand module provides NAME, HELP, add_arguments(parser) and run(args) -> int.
    subcommands = (run, worker, studies, Show, report, data)
    parser = _Parser(
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


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: bad input (reglab raises InvalidParameterError,
    a ValueError and TypeError), missing or unwritable files, a busy run directory, a
    storage that cannot be reached."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    from reglab.lab.sweep import RunDirBusy

    return (
        ValueError,
        TypeError,
        OSError,
        RunDirBusy,
        TimeoutError,
        ImportError,
        OperationalError,
        StorageInternalError,
    )


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.filename}: {err.strerror}"
    from reglab.lab.sweep.database import driver_error, first_line

    if driver_error(err) is not None:
        store = getattr(err, "store", None)  # reglab.lab.sweep.storage.mark_store
        return (
            f"the results store{f' {store}' if store else ''} failed: {first_line(err)} (is "
            "the run directory, or the --storage database, writable and reachable?)"
        )
    return str(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    try:
        parser = _parser()
    except MissingExtraError as err:
        print(f"reglab: {err}", file=sys.stderr)
        return 2
    from reglab.lab.interrupts import raise_on_terminate

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    raise_on_terminate()  # SIGTERM unwinds like Ctrl-C: trials are re-queued, workers ended
    try:
        return int(args.handler(args))
    except KeyboardInterrupt as err:
        name = signal.Signals(getattr(err, "signum", signal.SIGINT)).name
        hint = getattr(err, "hint", None)
        print(
            f"reglab {args.command}: interrupted ({name})" + (f"; {hint}" if hint else ""),
            file=sys.stderr,
        )
        return int(getattr(err, "exit_code", 130))
    except BrokenPipeError:
        # the reader went away (`reglab studies | head`): stop quietly, as Unix tools do on
        # SIGPIPE, and keep the interpreter from failing on the closed stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + getattr(signal, "SIGPIPE", 13)
    except _user_errors() as err:
        if args.debug:
            raise
        print(f"reglab {args.command}: error: {_describe(err)}", file=sys.stderr)
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
    finally:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
