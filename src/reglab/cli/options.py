"""Options shared by subcommands, and the checks that name the option they are about."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from reglab.lab.settings.studyfile import MAX_TRIALS
from reglab.lab.sweep.database import DEFAULT_RETRY
from reglab.lab.trust import ENVIRONMENT

__all__ = [
    "OptionError",
    "add_max_trials_option",
    "add_trust_option",
    "add_worker_options",
    "duration",
    "positive_int",
    "writable_directory",
]


class OptionError(ValueError):
    """A command-line option that cannot be used (one line naming the option)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds from ``300``, ``300s``, ``5m`` or ``1h`` (0 allowed: no waiting)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 300s, 5m or 1h, got {text!r}"
        ) from None
    if not 0 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"expected a duration from 0s to 100 days, got {text}")
    return value


def add_max_trials_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-trials",
        type=positive_int,
        metavar="N",
        help=f"allow a study of up to N trials (grid points x seeds; default {MAX_TRIALS:,}), "
        "counted before the grid is built",
    )


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-factory",
        action="append",
        metavar="MODULE",
        help="allow model factories from MODULE (and its submodules) to be imported and "
        f"called; repeatable (also: {ENVIRONMENT}=mod_a,mod_b). Without it a study that "
        "names a factory is refused",
    )


def device(text: str) -> torch.device:
    """``--device``: a device this machine has (:func:`reglab.lab.work.device.parse_device`)."""
    from reglab.lab.work.device import DeviceError, parse_device

    try:
        return parse_device(text)
    except DeviceError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device,
        default="cpu",
        metavar="DEVICE",
        help="where trials train: auto (cuda, else mps, else cpu), cpu (default; "
        "deterministic), cuda, cuda:N or mps",
    )
    parser.add_argument(
        "--heartbeat",
        type=positive_int,
        default=10,
        help="seconds between a running trial's heartbeats (10)",
    )
    parser.add_argument(
        "--grace",
        type=positive_int,
        default=30,
        help="seconds without heartbeat before a trial is retried (30)",
    )
    parser.add_argument(
        "--db-retry",
        type=duration,
        default=DEFAULT_RETRY,
        metavar="DURATION",
        help="how long to keep retrying a lost connection to a database server (PostgreSQL, "
        f"MySQL) before giving up, e.g. 300s or 10m ({DEFAULT_RETRY:g}s; 0: give up at once); "
        "trials in flight keep training and are stored once it is back",
    )
    parser.add_argument(
        "--no-stack",
        action="store_true",
        help="train every trial alone (by default, trials that differ only in seed and "
        "penalty coefficients train together as one model stack)",
    )
    add_trust_option(parser)


def writable_directory(path: Path, option: str) -> None:
    """Create ``path`` (and parents) unless it exists; :class:`OptionError` naming ``option``
    when it is not a directory or cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise OptionError(f"{option}: {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OptionError(f"{option}: cannot create {path}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OptionError(f"{option}: {path} is not writable")
