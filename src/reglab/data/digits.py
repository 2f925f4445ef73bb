"""scikit-learn's bundled 8x8 handwritten digits (UCI), the embedded default dataset.

The file is read where scikit-learn keeps it, as ``sklearn.datasets.load_digits`` reads it,
and the default split comes from rows recorded beside this module (``digits_split.npy``: what
``train_test_split(..., test_size=0.25, random_state=0, stratify=y)`` returns, checked against
scikit-learn by the tests): importing scikit-learn costs about 1 s of CPU, the file 5 ms, and
the default study pays it in every run. Other splits call scikit-learn.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from reglab._optional import require

__all__ = ["digits"]

#: The default split's rows of the 1,797 digits: the 1,347 training rows, then the 450 test
#: rows, in the order scikit-learn's seeded, stratified ``train_test_split`` returns them.
_DEFAULT_SPLIT = Path(__file__).with_name("digits_split.npy")
_TRAIN_ROWS = 1347


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(data, target)`` as ``sklearn.datasets.load_digits(return_X_y=True)`` gives them
    (float64 pixels 0..16 of shape ``(1797, 64)``, int labels), read from scikit-learn's
    ``digits.csv.gz`` without importing scikit-learn when the file is where it ships it."""
    spec = importlib.util.find_spec("sklearn")  # finds the package, imports nothing
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, mode="rt", encoding="utf-8") as file:
                data = np.loadtxt(file, delimiter=",")
            return data[:, :-1], data[:, -1].astype(int, copy=False)
    datasets = require("sklearn.datasets", "reglab.data.digits")
    return datasets.load_digits(return_X_y=True)


def digits(
    test_size: float = 0.25, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The 1,797 8x8 digits shipped with scikit-learn, split into train and test.

    Pixels are scaled from 0..16 to [0, 1]; the split is stratified and seeded
    (scikit-learn's ``train_test_split(x, y, test_size=test_size, random_state=seed,
    stratify=y)``).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: ``x`` float32 of shape ``(N, 64)``, ``y``
        int64 class labels 0..9 of shape ``(N,)``. The default split has 1,347 / 450 rows.

    >>> (x, y), (xt, yt) = digits()
    >>> tuple(x.shape), tuple(xt.shape)
    ((1347, 64), (450, 64))
    """
    data, target = _load_digits()
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int64)
    if (test_size, seed) == (0.25, 0) and _DEFAULT_SPLIT.is_file():
        rows = np.load(_DEFAULT_SPLIT).astype(np.intp)
        train, test = rows[:_TRAIN_ROWS], rows[_TRAIN_ROWS:]
        x_tr, x_te, y_tr, y_te = x[train], x[test], y[train], y[test]
    else:
        selection = require("sklearn.model_selection", "reglab.data.digits")
        x_tr, x_te, y_tr, y_te = selection.train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr)), (
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
    )
