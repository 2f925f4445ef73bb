"""Reading NumPy files as data only (``np.load(allow_pickle=False)``), with errors that say
which file and which array."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from reglab.lab.settings.schema import StudyError, fail

__all__ = ["load_npy", "load_npz"]

_PICKLED = "holds Python objects (pickled data); reglab reads arrays as data only"


def load_npy(file: Path, where: str, value: Any) -> np.ndarray:
    """The array in ``file``; :func:`~reglab.lab.settings.schema.fail` at ``where`` if it is
    missing, unreadable, not an ``.npy`` file, or an object array."""
    if not file.is_file():
        raise fail(where, f"no such file: {file}", value)
    try:
        with file.open("rb") as stream:
            magic = stream.read(6)
            stream.seek(0)
            if magic != b"\x93NUMPY":
                raise fail(where, f"{file.name} is not a NumPy .npy file", value)
            return np.load(stream, allow_pickle=False)
    except OSError as err:
        raise fail(where, f"cannot read {file}: {err.strerror or err}", value) from None
    except ValueError as err:
        if "Object arrays" in str(err):
            raise fail(where, f"{file.name} {_PICKLED}", value) from None
        raise fail(where, f"cannot read {file.name}: {err}", value) from None


def load_npz(file: Path, names: tuple[str, str], keys: tuple[str, str], at: Any, value: Any):
    """The arrays ``names`` of the ``.npz`` archive ``file``; a missing name is reported at
    its key (``keys[i]``), any other problem at ``path``."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            found = list(archive.files)
            arrays = []
            for name, key in zip(names, keys, strict=True):
                if name not in found:
                    raise fail(
                        at(key),
                        f"{file.name} has no array {name!r}; it has {', '.join(found) or 'none'}",
                        name,
                    )
                try:
                    arrays.append(archive[name])
                except ValueError as err:
                    if "Object arrays" in str(err):
                        message = f"array {name!r} of {file.name} {_PICKLED}"
                        raise fail(at(key), message, name) from None
                    raise
            return tuple(arrays)
    except StudyError:
        raise
    except OSError as err:
        raise fail(at("path"), f"cannot read {file}: {err.strerror or err}", value) from None
    except (ValueError, zipfile.BadZipFile, EOFError) as err:
        if "pickled" in str(err) or isinstance(err, (zipfile.BadZipFile, EOFError)):
            raise fail(at("path"), f"{file.name} is not a NumPy .npz archive", value) from None
        raise fail(at("path"), f"cannot read {file.name}: {err}", value) from None
