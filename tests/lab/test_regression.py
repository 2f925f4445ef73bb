"""Closed forms of the norm-constraints study against numpy and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from reglab.data import teacher_student
from reglab.lab.kinds.linear import equivalent_l2, ridge, ridge_metrics


def _problem() -> tuple[np.ndarray, np.ndarray]:
    (x, y), _ = teacher_student(n_train=40, n_inputs=60, noise=0.3, seed=3)
    return x.double().numpy(), y.double().numpy()


def test_ridge_matches_scikit_learn_with_alpha_n_times_l2() -> None:
    x, y = _problem()
    for l2 in (1e-3, 0.1, 5.0):
        reference = Ridge(alpha=len(x) * l2, fit_intercept=False, solver="svd").fit(x, y).coef_
        np.testing.assert_allclose(ridge(x, y, l2), reference, rtol=1e-9, atol=1e-12)


def test_ridge_tends_to_the_pseudo_inverse_solution() -> None:
    x, y = _problem()  # under-determined: 40 rows, 60 inputs
    pinv = np.linalg.pinv(x) @ y
    gaps = [
        np.linalg.norm(ridge(x, y, a) - pinv) / np.linalg.norm(pinv) for a in (1e-2, 1e-4, 1e-8)
    ]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-6
    np.testing.assert_allclose(ridge(x, y, 0.0), pinv, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(x @ pinv, y, atol=1e-9)  # it interpolates


def test_equivalent_l2_inverts_the_norm_of_the_ridge_path() -> None:
    x, y = _problem()
    for l2 in (1e-3, 0.3, 10.0):
        norm = float(np.linalg.norm(ridge(x, y, l2)))
        assert equivalent_l2(x, y, norm) == pytest.approx(l2, rel=1e-6)
    assert equivalent_l2(x, y, 1e6) == 0.0  # longer than the minimum-norm solution
    off_path = ridge(x, y, 0.3) + 0.1 * np.eye(x.shape[1])[0]
    assert ridge_metrics(off_path, x, y)["ridge_gap"] > 0.01
    assert ridge_metrics(ridge(x, y, 0.3), x, y)["ridge_gap"] < 1e-6


def test_teacher_student_is_seeded_and_test_targets_are_noise_free() -> None:
    (x, y), (xt, yt) = teacher_student(n_train=30, n_inputs=10, noise=2.0, n_test=50, seed=1)
    (x2, y2), _ = teacher_student(n_train=30, n_inputs=10, noise=2.0, n_test=50, seed=1)
    assert np.array_equal(x.numpy(), x2.numpy())
    assert np.array_equal(y.numpy(), y2.numpy())
    w, *_ = np.linalg.lstsq(xt.double().numpy(), yt.double().numpy(), rcond=None)
    np.testing.assert_allclose(xt.double().numpy() @ w, yt.double().numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="noise"):
        teacher_student(noise=-1.0)
