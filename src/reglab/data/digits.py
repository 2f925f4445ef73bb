"""scikit-learn's bundled 8x8 handwritten digits (UCI), the embedded default dataset."""

from __future__ import annotations

import numpy as np
import torch

from reglab._optional import require

__all__ = ["digits"]


def digits(
    test_size: float = 0.25, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The 1,797 8x8 digits shipped with scikit-learn, split into train and test.

    Pixels are scaled from 0..16 to [0, 1]; the split is stratified and seeded.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: ``x`` float32 of shape ``(N, 64)``, ``y``
        int64 class labels 0..9 of shape ``(N,)``. The default split has 1,347 / 450 rows.

    >>> (x, y), (xt, yt) = digits()
    >>> tuple(x.shape), tuple(xt.shape)
    ((1347, 64), (450, 64))
    """
    datasets = require("sklearn.datasets", "reglab.data.digits")
    selection = require("sklearn.model_selection", "reglab.data.digits")
    bunch = datasets.load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = selection.train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr)), (
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
    )
