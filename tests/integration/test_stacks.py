"""Mixed precision (bf16 / fp16 autocast with GradScaler), gradient accumulation and
``nn.TransformerEncoder``: reglab equals the same training written by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.penalties import L1, L2


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def _batches(n: int, rows: int = 8):
    g = torch.Generator().manual_seed(2)
    return [
        (torch.randn(rows, 6, generator=g), torch.randn(rows, 3, generator=g)) for _ in range(n)
    ]


def _hand_penalty(model: nn.Sequential, codes: torch.Tensor) -> torch.Tensor:
    weights = sum(1e-2 * m.weight.square().sum() for m in model if isinstance(m, nn.Linear))
    return weights + 1e-2 * codes.float().abs().sum() / codes.shape[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_with_grad_scaler_equals_hand_written(dtype: torch.dtype) -> None:
    results = []
    for use_reglab in (False, True):
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=dtype == torch.float16)
        reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1e-2)), "1": dict(activity=L1(1e-2))})
        for x, y in _batches(4):
            with torch.autocast("cpu", dtype=dtype):
                if use_reglab:
                    out = model(x)
                    loss = (out.float() - y).square().mean() + reg.penalty()
                else:
                    with reg.paused():
                        codes = model[1](model[0](x))
                        out = model[2](codes)
                    loss = (out.float() - y).square().mean() + _hand_penalty(model, codes)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        assert reg.terms()["1.activity"].dtype == torch.float32 if use_reglab else True
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


def test_gradient_accumulation_equals_the_full_batch() -> None:
    """Two micro-batches of 4 with (loss + penalty) / 2 == one batch of 8: the activity term
    is a per-batch mean (Keras' reduction) and the weight term is counted once."""
    grads = []
    for accumulate in (1, 2):
        model = mlp()
        reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1e-2)), "1": dict(activity=L1(1e-2))})
        ((x, y),) = _batches(1)
        model.zero_grad()
        for xm, ym in zip(x.chunk(accumulate), y.chunk(accumulate), strict=True):
            loss = (model(xm) - ym).square().mean() + reg.penalty()
            (loss / accumulate).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_transformer_encoder_equals_hand_written() -> None:
    def build() -> nn.TransformerEncoder:
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).double()

    x = torch.randn(3, 5, 16, dtype=torch.float64)
    params = []
    for use_reglab in (False, True):
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        kernels = [p for n, p in model.named_parameters() if "weight" in n and p.ndim >= 2]
        assert len(kernels) == 8  # in_proj_weight, out_proj, linear1, linear2 per layer
        acts: list[torch.Tensor] = []
        if use_reglab:
            reg = reglab.attach(
                model,
                {
                    (nn.Linear, nn.MultiheadAttention): dict(kernel=L2(1e-3)),
                    "layers.*.linear1": dict(activity=L1(1e-3)),
                },
            )
        else:
            for layer in model.layers:
                layer.linear1.register_forward_hook(lambda _m, _i, o, acts=acts: acts.append(o))
        for _ in range(3):
            loss = model(x).square().mean()
            if use_reglab:
                loss = loss + reg.penalty()
            else:
                loss = loss + 1e-3 * sum(w.square().sum() for w in kernels)
                loss = loss + 1e-3 * sum(h.abs().sum() / h.shape[0] for h in acts)
                acts.clear()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        params.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*params, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
