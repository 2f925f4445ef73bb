"""Regularization.statistics()'s ``projected/<parameter>``: the units a constraint actually
projected — a norm beyond the bound, an entry outside the set — counted against the norms
computed here with NumPy, never the units that Keras' ``n / (n + 1e-7)`` factor merely
rescales."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm
from reglab.constraints._base import beyond_rounding
from tests.conftest import constraint_examples


def linear_with_norms(norms: list[float], dtype: torch.dtype = torch.float32) -> nn.Linear:
    """A Linear(4, len(norms)) whose output unit i has L2 norm ``norms[i]`` exactly: the
    row ``norms[i] * (0.5, 0.5, 0.5, 0.5)``."""
    layer = nn.Linear(4, len(norms), bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(norms, dtype=torch.float64)[:, None] * 0.5)
    return layer


def projected(layer: nn.Module, constraint) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Attach ``constraint`` to the layer's kernel, project once; the statistic, the
    weight before and after."""
    reg = reglab.attach(layer, {"": dict(kernel_constraint=constraint)})
    reg.monitoring = True
    before = layer.weight.detach().clone()
    reg.apply_constraints()
    value = reg.statistics()["projected/weight"]
    assert value.dtype.is_floating_point  # Lightning logs it as is
    assert value.dim() == 0
    reg.remove()
    return value.item(), before, layer.weight.detach().clone()


def unit_norms(w: torch.Tensor) -> np.ndarray:
    return np.sqrt((w.double().numpy() ** 2).sum(axis=1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_norm_counts_units_above_the_bound_only(dtype: torch.dtype) -> None:
    # The case: MaxNorm(3.0) on units of norm 0.005 reported every unit projected.
    norms = [0.005, 0.005, 1.13, 3.0, 3.5, 40.0]  # below, below, below, at, above, above
    layer = linear_with_norms(norms, dtype)
    count, before, after = projected(layer, MaxNorm(3.0))
    assert count == int((unit_norms(before) > 3.0).sum()) == 2
    # Keras' rescale moved the units below the bound too (what the old count counted) ...
    assert bool((after[:3] != before[:3]).all())
    # ... and left the projected ones at the bound: projecting again projects nothing.
    np.testing.assert_allclose(unit_norms(after)[3:], 3.0, rtol=1e-6)
    assert projected(layer, MaxNorm(3.0))[0] == 0


def test_min_max_norm_counts_units_outside_the_interval() -> None:
    norms = [0.5, 1.0, 1.5, 2.0, 2.5]  # below min, at min, inside, at max, above max
    layer = linear_with_norms(norms)
    n = unit_norms(layer.weight.detach())
    assert projected(layer, MinMaxNorm(1.0, 2.0, rate=0.5))[0] == ((n < 1) | (n > 2)).sum() == 2
    # rate 0.5 moved them halfway: still outside, still projected
    assert projected(layer, MinMaxNorm(1.0, 2.0, rate=1.0))[0] == 2
    assert projected(layer, MinMaxNorm(1.0, 2.0, rate=1.0))[0] == 0  # now on the bounds
    assert projected(linear_with_norms(norms), MinMaxNorm(1.0, 2.0, rate=0.0))[0] == 0


def test_unit_norm_counts_units_not_of_norm_one() -> None:
    layer = linear_with_norms([0.5, 1.0, 1.0, 2.0])  # below, at, at, above
    count, before, after = projected(layer, UnitNorm())
    assert count == 2
    assert bool((after != before).all())  # w / (1e-7 + 1) rescaled the units at 1 as well
    assert projected(layer, UnitNorm())[0] == 0


def test_non_neg_counts_negative_entries() -> None:
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0, -0.0, 0.0], [1e-30, -1e-30, 2.0]]))
    count, before, _ = projected(layer, NonNeg())
    assert count == int((before.numpy() < 0).sum()) == 2  # entries, not units; -0.0 is not < 0
    assert projected(layer, NonNeg())[0] == 0


def test_constraints_with_an_axis_count_their_norm_groups() -> None:
    layer = linear_with_norms([0.5, 1.0, 4.0])  # columns: norms sqrt(0.5² + 1² + 4²) / 2
    column_norms = np.sqrt((layer.weight.detach().double().numpy() ** 2).sum(axis=0))
    assert projected(layer, MaxNorm(1.0, axis=0))[0] == (column_norms > 1.0).sum() == 4
    assert projected(layer, MaxNorm(100.0, axis=0))[0] == 0


def test_any_other_callable_counts_what_it_moved_beyond_rounding() -> None:
    layer = linear_with_norms([0.5, 1.0, 4.0])
    assert projected(layer, lambda w: w * (1 + 1e-8))[0] == 0  # a rounding-level change
    assert projected(layer, lambda w: w * (1 + 1e-5))[0] == 12  # every entry
    assert projected(layer, lambda w: w.clamp(max=1.0))[0] == 4  # the last unit's entries


@pytest.mark.parametrize("constraint", constraint_examples(), ids=lambda c: type(c).__name__)
def test_every_constraint_moves_what_it_calls_violated_and_leaves_none(constraint) -> None:
    w = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(0))  # no exact zeros
    w = w * torch.linspace(0.1, 1.0, 6)[:, None, None] * torch.tensor([0.1, 0.3, 1.0])  # norms vary
    violated = constraint.violated(w)
    assert violated.dtype == torch.bool
    assert bool(violated.any())
    moved = beyond_rounding(w, constraint(w))
    assert not bool((violated.expand_as(w) & ~moved).any())  # a violated unit is projected
    if getattr(constraint, "rate", 1.0) == 1.0:  # a full projection leaves nothing outside
        assert not bool(constraint.violated(constraint(w)).any())
