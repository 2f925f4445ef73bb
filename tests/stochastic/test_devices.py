"""Stochastic regularizers on every available device (CUDA when present)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from reglab.stochastic import GaussianNoise, LockedDropout, WeightDrop

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_weight_drop_lstm_on_device_without_warnings(device: str) -> None:
    torch.manual_seed(0)
    lstm = WeightDrop(nn.LSTM(8, 16, num_layers=2), ["weight_hh_l0", "weight_hh_l1"], p=0.5).to(
        device
    )
    x = torch.randn(12, 4, 8, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = lstm(x)
        out.sum().backward()
        lstm.eval()
        with torch.no_grad():
            torch.testing.assert_close(lstm(x)[0], lstm.module(x)[0])
    assert lstm.module.weight_hh_l1.grad.abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_generators_on_device_are_reproducible(device: str) -> None:
    x = torch.ones(5, 3, 7, device=device)
    outs = []
    for _ in range(2):
        g = torch.Generator(device=device).manual_seed(1)
        outs.append(LockedDropout(0.5, generator=g)(GaussianNoise(0.1, generator=g)(x)))
    assert torch.equal(outs[0], outs[1])
    assert outs[0].device.type == device
