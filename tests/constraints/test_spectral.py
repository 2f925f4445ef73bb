"""SpectralNorm against torch.nn.utils.parametrizations.spectral_norm (the same power
iteration from the same vector, Linear and ConvTranspose layouts) and the exact σ; Orthogonal
against scipy's polar decomposition; one effect each on digits."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import reglab
from reglab import InvalidParameterError
from reglab.constraints import Orthogonal, SpectralNorm
from reglab.data import digits
from reglab.training import fit


def _sigma(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().reshape(w.shape[0], -1).double(), 2))


@pytest.mark.parametrize(
    ("build", "units"),
    [
        (lambda: nn.Linear(6, 4), lambda w: w),
        (lambda: nn.Conv2d(3, 5, 3), lambda w: w),
        (lambda: nn.ConvTranspose2d(3, 5, 3), lambda w: w.movedim(1, 0)),  # torch's dim=1
    ],
    ids=["Linear", "Conv2d", "ConvTranspose2d"],
)
def test_one_power_iteration_equals_torch_from_the_same_vector(build, units) -> None:
    torch.manual_seed(0)
    module = build().double()  # float64: equal to rounding (float32 differs by ~1e-5)
    with torch.no_grad():
        module.weight.mul_(5.0)  # σ > 1: the bound binds
    reference = copy.deepcopy(module)
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    torch.manual_seed(1)  # torch draws its starting u from the global generator
    spectral_norm(reference, dim=dim)  # 15 warm-up iterations at registration
    sn = reference.parametrizations.weight[0]
    constraint = SpectralNorm(1.0, n_power_iterations=1)
    view = units(module.weight)
    constraint._v[(view.data_ptr(), tuple(view.shape))] = sn._v.clone()
    reg = reglab.attach(module, {"": dict(kernel_constraint=constraint)})
    reg.apply_constraints()
    expected = reference.weight  # training mode: one more power iteration, then W / σ
    torch.testing.assert_close(module.weight, expected, rtol=1e-10, atol=1e-12)
    # 16 power iterations: σ is within a few percent of the bound (torch's result too)
    assert _sigma(units(module.weight)) == pytest.approx(1.0, abs=2e-2)


def test_exact_sigma_and_the_bound_leaves_small_kernels_alone() -> None:
    torch.manual_seed(1)
    w = torch.randn(7, 4, dtype=torch.float64) * 3
    projected = SpectralNorm(2.0, n_power_iterations=None)(w)
    assert _sigma(projected) == pytest.approx(2.0, rel=1e-12)
    torch.testing.assert_close(projected, w * (2.0 / _sigma(w)))
    small = w / _sigma(w)
    assert torch.equal(SpectralNorm(2.0, n_power_iterations=None)(small), small)
    # The power iteration converges to the exact value, warm-starting call after call.
    constraint = SpectralNorm(2.0)
    estimates = [float(constraint.sigma(w)) for _ in range(30)]
    assert estimates[-1] == pytest.approx(_sigma(w), rel=1e-6)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(estimates))


def test_orthogonal_is_scipys_polar_factor() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    for shape in ((5, 5), (3, 6), (6, 3)):
        m = rng.normal(size=shape)
        u, _ = scipy_linalg.polar(m)  # m = u p, u the nearest (semi-)orthogonal matrix
        got = Orthogonal(gain=1.5)(torch.tensor(m))
        np.testing.assert_allclose(got.numpy(), 1.5 * u, rtol=1e-10, atol=1e-12)
    conv = torch.randn(4, 2, 3, 3)
    flat = Orthogonal()(conv).reshape(4, -1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(4), atol=1e-5, rtol=0)


def test_errors() -> None:
    with pytest.raises(InvalidParameterError, match=r"'max_value' parameter of SpectralNorm"):
        SpectralNorm(0.0)
    with pytest.raises(InvalidParameterError, match=r"'n_power_iterations' parameter"):
        SpectralNorm(1.0, n_power_iterations=0)
    with pytest.raises(ValueError, match=r"Orthogonal needs a kernel with at least 2 dimensions"):
        Orthogonal()(torch.ones(3))


def _train(constraint, seed: int = 0):
    (x, y), (xt, yt) = digits()
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    reg = (
        reglab.attach(model, {nn.Linear: dict(kernel_constraint=constraint)})
        if constraint
        else None
    )
    fit(
        model,
        (x, y),
        loss=nn.functional.cross_entropy,
        optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
        epochs=10,
        batch_size=64,
        seed=seed,
        regularization=reg,
        progress=False,
    )
    model.eval()
    accuracy = float((model(xt).argmax(1) == yt).float().mean())
    lipschitz = float(
        np.prod([_sigma(m.weight.detach()) for m in model if isinstance(m, nn.Linear)])
    )
    return accuracy, lipschitz, model


def test_effect_on_digits_spectral_norm_bounds_the_lipschitz_constant() -> None:
    plain_accuracy, plain_lipschitz, _ = _train(None)
    accuracy, lipschitz, _ = _train(SpectralNorm(2.0))
    # Three layers bounded by 2: the product of the σ's is at most 8 (measured 8.001 with one
    # power iteration per step); unconstrained it grows to 26. (A bound of 1 per layer does
    # not train at all here: 0.20 test accuracy, the logits cannot grow.)
    assert plain_lipschitz > 16
    assert lipschitz < 8 * 1.01
    assert accuracy > 0.85, (accuracy, plain_accuracy)  # measured 0.904 (plain 0.958)


def test_effect_on_digits_orthogonal_kernels_stay_orthogonal() -> None:
    accuracy, _, model = _train(Orthogonal())
    hidden = model[2].weight.detach()
    torch.testing.assert_close(hidden @ hidden.T, torch.eye(64), atol=1e-4, rtol=0)
    assert accuracy > 0.85
