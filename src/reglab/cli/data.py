"""``reglab data``: fetch datasets from local package sources, list what is here, and
inspect the user's own data as the lab will see it (``reglab data inspect FILE_OR_STUDY``)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reglab._validation import invalid
from reglab.data import get_fashion_mnist, get_gutenberg, get_mnist, list_datasets
from reglab.lab.sources import describe

NAME = "data"
HELP = (
    "get datasets (mnist, fashion-mnist, gutenberg), list what is available offline, or "
    "inspect your own data"
)

_GETTERS = {"mnist": get_mnist, "fashion-mnist": get_fashion_mnist, "gutenberg": get_gutenberg}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="{get,list,inspect}", required=True)
    get = sub.add_parser("get", help="put datasets' files in the data directory")
    get.add_argument(
        "names", nargs="+", metavar="NAME", help=f"one or more of {', '.join(_GETTERS)}"
    )
    get.add_argument(
        "--root", default=None, help="data directory (default: $REGLAB_DATA or the user cache dir)"
    )
    listing = sub.add_parser("list", help="show which datasets are available locally")
    listing.add_argument("--root", default=None)
    inspect = sub.add_parser(
        "inspect",
        help="show what the lab will see of your data: rows, features, classes and their "
        "counts, split sizes (reads only)",
    )
    inspect.add_argument(
        "target",
        metavar="FILE_OR_STUDY",
        help="a study file with [data] format = ..., or a data file or folder (.npz, .npy, "
        ".csv, .parquet, a folder of class folders, a save_to_disk folder)",
    )
    inspect.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [data] key for a data file (e.g. --set label=species); repeatable; VALUE is "
        "TOML (a bare word is a string)",
    )


def _keys(pairs: list[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs as ``[data]`` keys (VALUE parsed as TOML, else a string)."""
    from reglab._optional import toml

    keys: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise invalid("--set", "reglab data inspect", "KEY=VALUE", pair)
        try:
            keys[key.strip()] = toml().loads(f"v = {text}")["v"]
        except ValueError:
            keys[key.strip()] = text
    return keys


def run(args: argparse.Namespace) -> int:
    console = Console()
    if args.data_command == "inspect":
        print(describe(args.target, **_keys(args.set)))
        return 0
    if args.data_command == "get":
        for name in args.names:  # check every name before fetching anything
            if name not in _GETTERS:
                raise invalid("NAME", "reglab data get", f"one of {', '.join(_GETTERS)}", name)
        for name in args.names:
            with console.status(f"getting {name} ..."):
                folder = _GETTERS[name](
                    args.root, report=lambda m, n=name: console.print(f"{n}: {escape(m)}")
                )
            console.print(f"{name}: files in {escape(str(folder))}")
        return 0

    table = Table(title="reglab datasets")
    for column in ("name", "available", "location", "how to get"):
        table.add_column(column)
    for row in list_datasets(args.root):
        table.add_row(
            *(
                escape(cell)
                for cell in (
                    row.name,
                    "yes" if row.available else "no",
                    row.location,
                    row.how_to_get,
                )
            )
        )
    console.print(table)
    return 0
