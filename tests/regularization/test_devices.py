"""attach() is device-agnostic: the same numbers on every available device (CUDA when present)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L1L2, KLSparsity

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_fused_step_matches_autograd_on_device(device: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Sigmoid(), nn.Linear(16, 3)).double().to(device)
    reference = nn.Sequential(nn.Linear(6, 16), nn.Sigmoid(), nn.Linear(16, 3)).double().to(device)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(32, 6, dtype=torch.float64, device=device)

    reg = reglab.attach(
        model, {nn.Linear: dict(kernel=L1L2(1e-3, 1e-2)), "1": dict(activity=KLSparsity(0.1, 0.5))}
    )
    (model(x).square().mean() * 8.0 + 8.0 * reg.penalty()).backward()

    codes = reference[1](reference[0](x))
    pen = sum(L1L2(1e-3, 1e-2)(m.weight) for m in (reference[0], reference[2]))
    (8.0 * (reference[2](codes).square().mean() + pen + KLSparsity(0.1, 0.5)(codes))).backward()

    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
    assert all(t.device.type == device for t in reg.terms().values())


@pytest.mark.parametrize("device", DEVICES)
def test_constraints_and_empty_penalty_on_device(device: str) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU()).to(device)
    reg = reglab.attach(
        model, {"0": dict(kernel_constraint=MaxNorm(0.1)), "1": dict(activity=L1())}
    )
    reg.apply_constraints()
    assert model[0].weight.norm(dim=1).max().item() <= 0.1 + 1e-6
    empty = reg.penalty()  # nothing recorded yet and no weight penalty
    assert empty.device.type == device
    assert empty.item() == 0.0
