"""Every built-in penalty against a NumPy closed form and Keras' documented numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.penalties import (
    L1,
    L1L2,
    L2,
    ExpAbs,
    KLSparsity,
    Orthogonal,
    TemporalDifference,
    ToReference,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5))
T = torch.from_numpy(X)


def test_keras_documented_values() -> None:
    # From keras/src/regularizers/regularizers.py docstrings.
    assert L2(2.0)(torch.ones(5, 5)).item() == 50.0
    assert L1(0.01)(torch.ones(5, 5)).item() == pytest.approx(0.25)
    assert L2(0.5)(torch.ones(5, 5)).item() == 12.5


def test_keras_defaults() -> None:
    assert L1().l1 == 0.01
    assert L2().l2 == 0.01
    assert (L1L2().l1, L1L2().l2) == (0.0, 0.0)
    assert L1L2()(T).item() == 0.0
    assert (Orthogonal().factor, Orthogonal().mode) == (0.01, "rows")


@pytest.mark.parametrize(
    ("penalty", "expected"),
    [
        (L1(0.3), 0.3 * np.abs(X).sum()),
        (L2(0.2), 0.2 * (X**2).sum()),
        (L1L2(l1=0.1, l2=0.05), 0.1 * np.abs(X).sum() + 0.05 * (X**2).sum()),
        (ExpAbs(0.07), 0.07 * (np.exp(np.abs(X)) - 1).sum()),
        (
            ToReference(torch.full((6, 5), 0.25, dtype=torch.float64), 0.4),
            0.4 * ((X - 0.25) ** 2).sum(),
        ),
    ],
    ids=lambda p: type(p).__name__ if not isinstance(p, float) else "",
)
def test_elementwise_closed_forms(penalty, expected) -> None:
    assert penalty(T).item() == pytest.approx(expected, rel=1e-12)


def _orthogonal_numpy(x: np.ndarray, factor: float, mode: str) -> float:
    m = x if mode == "rows" else x.T
    unit = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-7)
    p = unit @ unit.T
    n = m.shape[0]
    off = np.abs(p[~np.eye(n, dtype=bool)]).sum()
    return factor * 0.5 * off / (n * (n - 1) / 2)


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_closed_form(mode: str) -> None:
    assert Orthogonal(0.5, mode)(T).item() == pytest.approx(_orthogonal_numpy(X, 0.5, mode))


def test_orthogonal_is_zero_for_orthonormal_and_max_for_parallel_rows() -> None:
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    assert Orthogonal(1.0)(q).item() == pytest.approx(0.0, abs=1e-12)
    parallel = torch.ones(4, 3)  # every cosine is 1 -> factor * mean(|cos|) = factor
    assert Orthogonal(0.3)(parallel).item() == pytest.approx(0.3)


def test_orthogonal_flattens_conv_kernels_per_output_unit() -> None:
    w = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    expected = _orthogonal_numpy(w.reshape(4, -1).numpy(), 0.2, "rows")
    assert Orthogonal(0.2)(w).item() == pytest.approx(expected)


def test_kl_sparsity_closed_form() -> None:
    acts = RNG.uniform(0.01, 0.99, size=(32, 7))
    rho, beta = 0.1, 2.0
    q = acts.mean(0)
    expected = beta * (rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))).sum()
    value = KLSparsity(target=rho, coefficient=beta)(torch.from_numpy(acts)).item()
    assert value == pytest.approx(expected, rel=1e-12)


def test_kl_sparsity_is_zero_at_target_and_rejects_values_outside_unit_interval() -> None:
    assert KLSparsity(0.3)(torch.full((10, 4), 0.3, dtype=torch.float64)).item() == pytest.approx(0)
    with pytest.raises(ValueError, match=r"needs activations in \[0, 1\].*Got values in \[-1"):
        KLSparsity()(torch.tensor([[-1.0, 0.5]]))


def test_temporal_difference_closed_form_awd_lstm() -> None:
    h = RNG.normal(size=(9, 4, 3))  # (T, B, H), nn.LSTM's default layout
    expected = 1.5 * ((h[1:] - h[:-1]) ** 2).mean()
    assert TemporalDifference(1.5, time_dim=0)(torch.from_numpy(h)).item() == pytest.approx(
        expected
    )
    hb = np.transpose(h, (1, 0, 2))  # batch_first
    assert TemporalDifference(1.5, time_dim=1)(torch.from_numpy(hb)).item() == pytest.approx(
        expected
    )


def test_temporal_difference_needs_two_steps() -> None:
    with pytest.raises(
        ValueError, match=r"needs at least 2 steps along that dimension. Got shape \(1, 3\)"
    ):
        TemporalDifference(time_dim=0)(torch.zeros(1, 3))


def test_to_reference_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"shape \(2,\) but its reference has shape \(3,\)"):
        ToReference(torch.zeros(3))(torch.zeros(2))


def test_exp_abs_penalises_large_weights_harder_than_l2_and_small_ones_less_than_l1() -> None:
    big, small = torch.tensor([3.0]), torch.tensor([1e-3])
    assert ExpAbs(1.0).gradient(big) > L2(1.0).gradient(big)
    # Near zero ExpAbs' slope is 1 + |x|, like L1's 1: its pull toward 0 is no stronger than L1's
    # plus L2's, and its curvature is that of L2 with coefficient 1/2.
    assert ExpAbs(1.0)(small).item() == pytest.approx(1e-3 + 0.5e-6, rel=1e-6)
