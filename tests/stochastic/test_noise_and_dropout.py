"""Statistical tests: means preserved, variances as documented, masks shared as claimed,
identity in eval mode. Large seeded tensors, tolerances of several standard errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from reglab import InvalidParameterError
from reglab.stochastic import (
    DropConnect,
    EmbeddingDropout,
    GaussianDropout,
    GaussianNoise,
    LockedDropout,
    WeightDrop,
    WeightNoise,
    embedding_dropout,
)

N = 400_000  # standard error of a mean of unit-variance samples: 0.0016


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "module",
    [
        GaussianNoise(0.3),
        GaussianDropout(0.4),
        LockedDropout(0.5),
        WeightDrop(nn.Linear(4, 4), "weight", 0.5),
        WeightNoise(nn.Linear(4, 4), std=0.5),
        DropConnect(4, 4, p=0.5),
        EmbeddingDropout(nn.Embedding(10, 4), p=0.5),
    ],
    ids=lambda m: type(m).__name__,
)
def test_eval_mode_is_identity_and_shape_is_preserved(module: nn.Module) -> None:
    x = (
        torch.randint(0, 10, (6, 4))
        if isinstance(module, EmbeddingDropout)
        else torch.randn(6, 3, 4)
    )
    module.eval()
    reference = (
        module.embedding(x)
        if isinstance(module, EmbeddingDropout)
        else (
            module.module(x)
            if hasattr(module, "module")
            else (
                nn.functional.linear(x, module.weight, module.bias)
                if isinstance(module, nn.Linear)
                else x
            )
        )
    )
    out = module(x)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    module.train()
    assert module(x).shape == out.shape
    assert "p=" in repr(module) or "std=" in repr(module)


def test_gaussian_noise_adds_noise_of_the_given_std() -> None:
    x = torch.full((N,), 2.0)
    noise = GaussianNoise(0.7, generator=_gen())(x) - x
    assert abs(noise.mean().item()) < 5 * 0.7 / N**0.5
    assert noise.std().item() == pytest.approx(0.7, rel=0.01)
    a = GaussianNoise(0.7, generator=_gen(3))(x)
    b = GaussianNoise(0.7, generator=_gen(3))(x)
    assert torch.equal(a, b)  # reproducible from the generator


def test_gaussian_dropout_has_mean_one_and_dropout_variance() -> None:
    p = 0.3
    factor = GaussianDropout(p, generator=_gen())(torch.ones(N))
    assert factor.mean().item() == pytest.approx(1.0, abs=5 * (p / (1 - p)) ** 0.5 / N**0.5)
    assert factor.var().item() == pytest.approx(p / (1 - p), rel=0.02)


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_shares_one_mask_over_time(batch_first: bool) -> None:
    p, steps = 0.4, 7
    shape = (200, steps, 500) if batch_first else (steps, 200, 500)
    y = LockedDropout(p, batch_first=batch_first, generator=_gen())(torch.ones(shape))
    per_step = y.unbind(1 if batch_first else 0)
    for step in per_step[1:]:
        assert torch.equal(step, per_step[0])  # same mask at every time step
    mask = per_step[0]
    values = mask.unique()
    torch.testing.assert_close(values, torch.tensor([0.0, 1 / (1 - p)]))
    assert (mask == 0).float().mean().item() == pytest.approx(p, abs=0.01)
    assert mask.mean().item() == pytest.approx(1.0, abs=0.02)


def _effective_weight(layer: nn.Module) -> torch.Tensor:
    """Read the (perturbed) weight of a Linear-like layer: rows of I Wᵀ, bias removed."""
    eye = torch.eye(4)
    bias = layer.module.bias if hasattr(layer, "module") else layer.bias
    return (layer(eye) - bias).T.detach()


@pytest.mark.parametrize(
    "make",
    [
        lambda: WeightDrop(nn.Linear(4, 4), "weight", 0.3, generator=_gen()),
        lambda: DropConnect(4, 4, p=0.3, generator=_gen()),
    ],
    ids=["WeightDrop", "DropConnect"],
)
def test_drop_connect_drops_weights_and_keeps_the_mean(make) -> None:
    layer = make()
    weight = (layer.module.weight if hasattr(layer, "module") else layer.weight).detach()
    draws = torch.stack([_effective_weight(layer) for _ in range(20_000)])  # (draws, 4, 4)
    zeros = (draws.abs() < 1e-7).float().mean().item()
    assert zeros == pytest.approx(0.3, abs=0.005)
    kept = draws[draws.abs() >= 1e-7]
    ratio = kept / weight.expand_as(draws)[draws.abs() >= 1e-7]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / 0.7))
    torch.testing.assert_close(draws.mean(0), weight, atol=0.02, rtol=0.02)


def test_weight_drop_on_lstm_hidden_to_hidden_today() -> None:
    lstm = WeightDrop(
        nn.LSTM(5, 8, num_layers=2), ["weight_hh_l0", "weight_hh_l1"], p=0.5, generator=_gen()
    )
    x = torch.randn(6, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no flatten_parameters / non-contiguous warnings
        out_a, _ = lstm(x)
        out_b, _ = lstm(x)
    assert not torch.allclose(out_a, out_b)  # a fresh mask per call
    out_a.sum().backward()
    assert lstm.module.weight_hh_l0.grad.abs().sum() > 0  # the raw weight learns
    assert isinstance(lstm.module.weight_hh_l0, nn.Parameter)  # nothing re-registered
    assert list(lstm.state_dict())[:2] == ["module.weight_ih_l0", "module.weight_hh_l0"]
    lstm.eval()
    torch.testing.assert_close(lstm(x)[0], lstm.module(x)[0], rtol=0, atol=0)


def test_weight_noise_perturbs_weights_with_the_given_std() -> None:
    layer = WeightNoise(nn.Linear(4, 4), std=0.2, generator=_gen())
    draws = torch.stack([_effective_weight(layer) for _ in range(5000)])
    delta = draws - layer.module.weight.detach()
    assert delta.std().item() == pytest.approx(0.2, rel=0.02)
    assert abs(delta.mean().item()) < 0.005


def test_drop_connect_state_dict_is_a_linear_one() -> None:
    layer = DropConnect(3, 2, p=0.5)
    plain = nn.Linear(3, 2)
    plain.load_state_dict(layer.state_dict())
    layer.eval()
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(x), plain(x))
    shared = DropConnect.from_linear(plain, p=0.2)
    assert shared.weight is plain.weight


def test_embedding_dropout_drops_whole_words() -> None:
    emb = nn.Embedding(50, 8)
    words = torch.randint(0, 50, (400, 30))
    out = embedding_dropout(emb, words, 0.4, generator=_gen())  # (400, 30, 8)
    dropped = (out == 0).all(-1)  # (400, 30)
    for w in words.unique():
        where = words == w
        assert dropped[where].all() or not dropped[where].any()  # all occurrences alike
    kept = ~dropped
    torch.testing.assert_close(out[kept], emb(words)[kept] / 0.6)
    fraction = (
        torch.stack(
            [
                (embedding_dropout(emb, torch.arange(50), 0.4, generator=_gen(s)) == 0)
                .all(-1)
                .float()
                .mean()
                for s in range(400)
            ]
        )
        .mean()
        .item()
    )
    assert fraction == pytest.approx(0.4, abs=0.01)
    assert torch.equal(embedding_dropout(emb, words, 0.4, training=False), emb(words))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: LockedDropout(1.5),
            r"The 'p' parameter of LockedDropout must be a float in \[0, 1\)\. Got 1\.5 instead\.",
        ),
        (
            lambda: GaussianDropout(1.0),
            r"'p' parameter of GaussianDropout must be a float in \[0, 1\)\. Got 1\.0",
        ),
        (
            lambda: GaussianNoise(-0.1),
            r"'std' parameter of GaussianNoise must be a finite number >= 0\. Got -0\.1",
        ),
        (
            lambda: WeightDrop(nn.LSTM(2, 2), "weight_hh", 0.5),
            r"'names' parameter of WeightDrop must name parameters of LSTM\. Got \['weight_hh'\]; available: weight_ih_l0, weight_hh_l0",
        ),
    ],
)
def test_bad_arguments(build, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        build()
