"""RandomAffine: kornia glue for flat or image batches, training mode only."""

from __future__ import annotations

import pytest
import torch

from reglab import InvalidParameterError
from reglab.data import digits
from reglab.stochastic import RandomAffine


def test_flattened_digits_are_transformed_per_sample_in_training_only() -> None:
    (x, _), _ = digits()
    batch = x[:32]
    aug = RandomAffine(degrees=15, translate=0.1, scale=(0.9, 1.1), image_shape=(1, 8, 8))
    torch.manual_seed(0)
    out = aug(batch)
    assert out.shape == batch.shape
    changed = (out - batch).abs().mean(1)  # (32,)
    assert (changed > 0.01).all()
    assert changed.std() > 0  # a different draw per sample
    assert torch.equal(aug.eval()(batch), batch)


def test_zero_ranges_are_the_identity() -> None:
    images = torch.rand(4, 1, 8, 8)
    aug = RandomAffine(degrees=0, translate=0, scale=(1.0, 1.0))
    torch.testing.assert_close(aug(images), images, atol=1e-5, rtol=0)


def test_bad_scale() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"'scale' parameter of RandomAffine must be \(low, high\) with 0 < low <= high\. Got \(1\.2, 1\.0\)",
    ):
        RandomAffine(scale=(1.2, 1.0))
