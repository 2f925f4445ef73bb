"""Shared fixtures: one example instance of every registered penalty and constraint."""

from __future__ import annotations

import pytest
import torch

from reglab import constraints, penalties


def penalty_examples() -> list[penalties.Penalty]:
    """One non-default instance of every registered penalty class (checked to be complete)."""
    examples = [
        penalties.L1(0.3),
        penalties.L2(0.2),
        penalties.L1L2(l1=0.1, l2=0.05),
        penalties.ExpAbs(0.07),
        penalties.Orthogonal(0.5, mode="columns"),
        penalties.KLSparsity(target=0.1, coefficient=2.0),
        penalties.TemporalDifference(coefficient=1.5, time_dim=1),
        penalties.NegativeEntropy(0.3),
        penalties.ToReference(torch.full((6, 5), 0.25, dtype=torch.float64), l2=0.4),
    ]
    assert {type(e) for e in examples} == set(penalties._base.registry.classes())
    return examples


def constraint_examples() -> list[constraints.Constraint]:
    examples = [
        constraints.MaxNorm(0.5),
        constraints.MinMaxNorm(0.2, 0.6, rate=0.7, axis=0),
        constraints.UnitNorm(axis=(0, 1)),
        constraints.NonNeg(),
        constraints.SpectralNorm(0.5, n_power_iterations=3),
        constraints.Orthogonal(gain=2.0),
    ]
    assert {type(e) for e in examples} == set(constraints._base.registry.classes())
    return examples


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
