"""reglab vs Keras 3 itself (KERAS_BACKEND=torch): same weights/outputs, same numbers.

Skipped when keras is not installed; the `test` extra pins keras==3.15.1.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
import torch
from torch import nn

import reglab
from reglab import constraints, penalties

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another test set the backend
    pytest.skip("these comparisons need KERAS_BACKEND=torch", allow_module_level=True)

RNG = np.random.default_rng(3)
# Keras' torch backend passes copy= to __array__ of its own tensors; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x).astype(np.float64)


@pytest.mark.parametrize(
    "theirs",
    [
        lambda: keras.regularizers.L1(None),
        lambda: keras.regularizers.L2(None),
        lambda: keras.regularizers.L1L2(None, None),
        lambda: keras.regularizers.L1L2(l1=0.25),
        lambda: keras.regularizers.L2(0.125),
        lambda: keras.regularizers.OrthogonalRegularizer(0.5, "columns"),
    ],
)
def test_keras_serialized_regularizers_and_none_defaults(theirs) -> None:
    """``penalties.get(keras.regularizers.serialize(r))`` computes what ``r`` computes."""
    regularizer = theirs()
    config = keras.regularizers.serialize(regularizer)
    ours = penalties.get(config)
    assert type(ours).__name__ in (config["class_name"], "Orthogonal")
    x = RNG.normal(size=(6, 5))
    expected = float(_np(regularizer(keras.ops.convert_to_tensor(x.astype(np.float32)))))
    assert float(ours(torch.tensor(x, dtype=torch.float32))) == pytest.approx(expected, rel=1e-5)


def test_none_means_keras_default() -> None:
    assert penalties.L1(None).get_config() == {"l1": 0.01}
    assert penalties.L2(None).get_config() == {"l2": 0.01}
    assert penalties.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}
    assert keras.regularizers.L1(None).get_config()["l1"] == pytest.approx(0.01)
    assert keras.regularizers.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (penalties.L1(0.3), lambda: keras.regularizers.L1(0.3)),
        (penalties.L2(0.2), lambda: keras.regularizers.L2(0.2)),
        (penalties.L1L2(0.1, 0.05), lambda: keras.regularizers.L1L2(0.1, 0.05)),
        (penalties.L1L2(), lambda: keras.regularizers.get("l1l2")),
        (
            penalties.Orthogonal(0.5, "rows"),
            lambda: keras.regularizers.OrthogonalRegularizer(0.5, "rows"),
        ),
        (
            penalties.Orthogonal(0.5, "columns"),
            lambda: keras.regularizers.OrthogonalRegularizer(0.5, "columns"),
        ),
    ],
    ids=lambda p: repr(p) if isinstance(p, penalties.Penalty) else "",
)
def test_penalties_equal_keras(ours, theirs) -> None:
    x = RNG.normal(size=(7, 5)).astype(np.float32)
    expected = float(_np(theirs()(keras.ops.convert_to_tensor(x))))
    assert ours(torch.from_numpy(x)).item() == pytest.approx(expected, rel=1e-5)


def test_orthogonal_kernel_layouts_map_rows_to_columns() -> None:
    # A Keras Dense kernel is (in, out); PyTorch's Linear.weight is (out, in) = kernelᵀ.
    kernel = RNG.normal(size=(6, 4)).astype(np.float32)
    # A backend tensor, not a NumPy array: Keras 3.15.1's NumPy branch of normalize() fails
    # to broadcast for axis=0 ("columns").
    regularizer = keras.regularizers.OrthogonalRegularizer(1.0, "columns")
    expected = float(_np(regularizer(keras.ops.convert_to_tensor(kernel))))
    ours = penalties.Orthogonal(1.0, "rows")(torch.from_numpy(kernel.T.copy())).item()
    assert ours == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (constraints.MaxNorm(0.7), lambda: keras.constraints.MaxNorm(0.7, axis=0)),
        (constraints.UnitNorm(), lambda: keras.constraints.UnitNorm(axis=0)),
        (
            constraints.MinMaxNorm(0.5, 0.9, 0.6),
            lambda: keras.constraints.MinMaxNorm(0.5, 0.9, 0.6, axis=0),
        ),
        (constraints.NonNeg(), lambda: keras.constraints.NonNeg()),
    ],
    ids=lambda c: type(c).__name__ if isinstance(c, constraints.Constraint) else "",
)
def test_dense_constraints_equal_keras_with_transposed_layout(ours, theirs) -> None:
    kernel = RNG.normal(size=(6, 4)).astype(np.float32)  # Keras (in, out)
    expected = _np(theirs()(keras.ops.convert_to_tensor(kernel)))
    got = ours(torch.from_numpy(kernel.T.copy())).numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_conv_max_norm_equals_keras_channels_last_axis() -> None:
    kernel = RNG.normal(size=(3, 3, 2, 5)).astype(np.float32)  # Keras (kh, kw, in, out)
    expected = _np(
        keras.constraints.MaxNorm(1.0, axis=[0, 1, 2])(keras.ops.convert_to_tensor(kernel))
    )
    ours = constraints.MaxNorm(1.0)(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    np.testing.assert_allclose(ours.numpy().transpose(2, 3, 1, 0), expected, rtol=1e-5, atol=1e-7)


def test_dense_layer_losses_equal_keras_including_activity_batch_division() -> None:
    # The Keras Regularizer docstring example, plus a non-trivial random case.
    for kernel, x in [
        (np.ones((5, 5), np.float32), np.full((5, 5), 2.0, np.float32)),
        (RNG.normal(size=(4, 3)).astype(np.float32), RNG.normal(size=(8, 4)).astype(np.float32)),
    ]:
        n_in, n_out = kernel.shape
        layer = keras.layers.Dense(
            n_out,
            kernel_regularizer=keras.regularizers.L1(0.01),
            activity_regularizer=keras.regularizers.L2(0.01),
            bias_initializer="zeros",
        )
        layer.build((None, n_in))
        layer.kernel.assign(kernel)
        layer(keras.ops.convert_to_tensor(x))
        expected = sum(float(_np(loss)) for loss in layer.losses)

        linear = nn.Linear(n_in, n_out)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.zero_()
        reg = reglab.attach(
            linear, {"": dict(kernel=penalties.L1(0.01), activity=penalties.L2(0.01))}
        )
        linear(torch.from_numpy(x))
        assert reg.penalty().item() == pytest.approx(expected, rel=1e-5)
    assert expected != 0.0
