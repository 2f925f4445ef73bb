"""Constraints against NumPy closed forms, with PyTorch's (out, in, *k) layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm

EPS = 1e-7
RNG = np.random.default_rng(1)


def _norms(w: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sqrt((w**2).sum(axis=axes, keepdims=True))


def test_linear_weight_norm_is_per_output_unit() -> None:
    w = RNG.normal(size=(4, 6))  # Linear.weight: (out, in)
    out = MaxNorm(1.0)(torch.from_numpy(w)).numpy()
    n = _norms(w, (1,))
    np.testing.assert_allclose(out, w * np.clip(n, 0, 1.0) / (EPS + n), rtol=1e-12)
    assert np.all(np.linalg.norm(out, axis=1) <= 1.0 + 1e-9)


def test_conv_weight_norm_is_over_all_dims_but_the_first() -> None:
    w = RNG.normal(size=(3, 2, 3, 3))  # Conv2d.weight: (out, in, kh, kw)
    out = UnitNorm()(torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(out, w / (EPS + _norms(w, (1, 2, 3))), rtol=1e-12)
    np.testing.assert_allclose(np.sqrt((out**2).sum(axis=(1, 2, 3))), 1.0, rtol=1e-6)


def test_bias_norm_is_over_the_whole_vector() -> None:
    b = np.array([3.0, 4.0])
    np.testing.assert_allclose(MaxNorm(1.0)(torch.from_numpy(b)).numpy(), [0.6, 0.8], rtol=1e-6)


def test_axis_overrides_the_layout() -> None:
    w = RNG.normal(size=(4, 6))
    out = MaxNorm(0.5, axis=0)(torch.from_numpy(w)).numpy()
    n = _norms(w, (0,))
    np.testing.assert_allclose(out, w * np.clip(n, 0, 0.5) / (EPS + n), rtol=1e-12)


@pytest.mark.parametrize("rate", [1.0, 0.3])
def test_min_max_norm_closed_form(rate: float) -> None:
    w = RNG.normal(size=(5, 3)) * np.array([[0.1], [0.5], [1.0], [2.0], [4.0]])
    out = MinMaxNorm(0.4, 1.5, rate)(torch.from_numpy(w)).numpy()
    n = _norms(w, (1,))
    desired = rate * np.clip(n, 0.4, 1.5) + (1 - rate) * n
    np.testing.assert_allclose(out, w * desired / (EPS + n), rtol=1e-12)


def test_max_norm_leaves_small_units_alone() -> None:
    w = torch.tensor([[0.3, 0.4], [3.0, 4.0]], dtype=torch.float64)
    out = MaxNorm(2.0)(w)
    torch.testing.assert_close(out[0], w[0] * 0.5 / (EPS + 0.5))
    torch.testing.assert_close(out[1], w[1] * 2.0 / (EPS + 5.0))


def test_non_neg() -> None:
    torch.testing.assert_close(
        NonNeg()(torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([0.0, 0.0, 2.0])
    )
