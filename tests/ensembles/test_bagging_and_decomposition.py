"""Bagging on digits, the exact error identities, MC dropout, SWA/EMA."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reglab import InvalidParameterError
from reglab.data import digits
from reglab.ensembles import (
    EMA,
    SWA,
    Bagging,
    ambiguity_decomposition,
    compare_inference_rules,
    error_decomposition,
    mc_dropout_predict,
)
from reglab.lab import mlp
from reglab.training import Callback, fit


def test_error_decomposition_identity_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(100, 3, generator=g, dtype=torch.float64)
    shared = torch.randn(100, 3, generator=g, dtype=torch.float64)  # common error -> c > 0
    preds = targets + shared + 0.5 * torch.randn(7, 100, 3, generator=g, dtype=torch.float64)
    d = error_decomposition(preds, targets)
    assert d["predicted_mse"] == pytest.approx(d["ensemble_mse"], rel=1e-12)
    e = (preds - targets).double()
    assert d["v"] == pytest.approx(e.square().mean().item(), rel=1e-12)
    assert 0 < d["c"] < d["v"]
    assert d["ensemble_mse"] == pytest.approx(
        ((preds.mean(0) - targets) ** 2).double().mean().item(), rel=1e-9
    )


def test_ambiguity_decomposition_identity_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(5, 50, 4, generator=g).softmax(-1)
    y = torch.randint(0, 4, (50,), generator=g)
    d = ambiguity_decomposition(probs, y)
    assert d["ensemble_brier"] == pytest.approx(d["mean_member_brier"] - d["ambiguity"], rel=1e-12)


def test_decomposition_shape_errors() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"'predictions' parameter of error_decomposition must be \(K, N, \.\.\.\) with targets of shape \(N, \.\.\.\)",
    ):
        error_decomposition(torch.zeros(3, 5), torch.zeros(4))


@pytest.fixture(scope="module")
def bagged():
    (x, y), (xt, yt) = digits()
    bag = Bagging(lambda: mlp([64, 64, 10]), n_members=8, epochs=12, seed=0).fit(x, y)
    return bag, xt, yt


def test_bagged_members_are_imperfectly_correlated_and_the_ensemble_helps(bagged) -> None:
    bag, xt, yt = bagged
    probs = bag.member_proba(xt)  # (8, N, 10)
    d = error_decomposition(probs, F.one_hot(yt, 10).to(probs.dtype))
    assert d["c"] < 0.98 * d["v"]  # errors less than perfectly correlated
    assert d["ensemble_mse"] < d["mean_member_mse"]
    member_acc = (probs.argmax(-1) == yt).double().mean(1)
    assert bag.score(xt, yt) >= member_acc.mean().item()
    assert len(bag.members_) == 8
    torch.testing.assert_close(bag.members_[3](xt).softmax(-1), probs[3])


def test_bootstrap_indices_are_reproducible_from_the_seed() -> None:
    (x, y), _ = digits()
    x, y = x[:200], y[:200]
    make = dict(model_fn=lambda: nn.Linear(64, 10), n_members=3, epochs=1)
    a = Bagging(seed=7, **make).fit(x, y)
    b = Bagging(seed=7, **make).fit(x, y)
    c = Bagging(seed=8, **make).fit(x, y)
    assert torch.equal(a.bootstrap_indices_, b.bootstrap_indices_)
    assert not torch.equal(a.bootstrap_indices_, c.bootstrap_indices_)
    assert a.bootstrap_indices_.shape == (3, 200)
    # Sampling with replacement: about 1 - 1/e = 63 % distinct rows per member.
    distinct = torch.tensor([len(r.unique()) for r in a.bootstrap_indices_]) / 200
    assert ((distinct > 0.55) & (distinct < 0.72)).all()
    torch.testing.assert_close(a.stack_(x[:5]), b.stack_(x[:5]))


def test_hard_vote_and_errors(bagged) -> None:
    bag, xt, yt = bagged
    bag.vote = "hard"
    try:
        proba = bag.predict_proba(xt)
        torch.testing.assert_close(proba.sum(1), torch.ones(len(xt), dtype=proba.dtype))
        assert bag.score(xt, yt) > 0.9
    finally:
        bag.vote = "soft"
    with pytest.raises(
        InvalidParameterError,
        match=r"'vote' parameter of Bagging must be one of 'soft', 'hard'\. Got 'mean'",
    ):
        Bagging(lambda: nn.Linear(2, 2), vote="mean").fit(
            torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
        )


def _dropout_classifier() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    (x, y), (xt, yt) = digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    fit(
        model,
        (x, y),
        loss=F.cross_entropy,
        optimizer=torch.optim.Adam(model.parameters(), 1e-3),
        epochs=15,
        progress=False,
        seed=0,
    )
    return model, xt, yt


def test_mc_dropout_converges_and_restores_modes() -> None:
    model, xt, _ = _dropout_classifier()
    model.train()
    reference = mc_dropout_predict(model, xt, 2000, seed=123).mean
    gaps = [
        (mc_dropout_predict(model, xt, n, seed=n).mean - reference).abs().mean().item()
        for n in (5, 50, 500)
    ]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.35 * gaps[0]  # ~ 1/sqrt(n): 10x fewer draws, ~3x the error
    assert model.training  # modes restored
    assert model[2].training
    pred = mc_dropout_predict(model, xt, 20, seed=0)
    assert pred.std.max() > 0
    torch.testing.assert_close(pred.mean, mc_dropout_predict(model, xt, 20, seed=0).mean)
    no_dropout = nn.Linear(64, 10)
    assert mc_dropout_predict(no_dropout, xt, 5).std.abs().max() == 0


def test_compare_inference_rules_on_digits() -> None:
    model, xt, yt = _dropout_classifier()
    result = compare_inference_rules(model, xt, yt, n_samples=100)
    assert set(result) == {"weight_scaling", "mc_dropout"}
    for rule in result.values():
        assert rule["accuracy"] > 0.9
        assert 0 < rule["nll"] < 0.5
    assert abs(result["weight_scaling"]["accuracy"] - result["mc_dropout"]["accuracy"]) < 0.03


def test_swa_is_the_mean_of_epoch_end_weights() -> None:
    (x, y), _ = digits()
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    snapshots = []

    class Keep(Callback):
        def on_epoch_end(self, state) -> None:
            snapshots.append(state.model.weight.detach().clone())

    swa = SWA(swa_start=2)
    fit(
        model,
        (x, y),
        loss=F.cross_entropy,
        optimizer=torch.optim.SGD(model.parameters(), 0.1),
        epochs=5,
        callbacks=[Keep(), swa],
        progress=False,
        seed=0,
    )
    torch.testing.assert_close(model.weight, torch.stack(snapshots[2:]).mean(0))


def test_ema_follows_its_recursion() -> None:
    (x, y), _ = digits()
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    steps = []

    class Keep(Callback):
        def on_batch_end(self, state) -> None:
            steps.append(state.model.weight.detach().clone())

    fit(
        model,
        (x[:256], y[:256]),
        loss=F.cross_entropy,
        epochs=2,
        batch_size=64,
        optimizer=torch.optim.SGD(model.parameters(), 0.1),
        callbacks=[Keep(), EMA(0.9)],
        progress=False,
        seed=0,
    )
    ema = steps[0]
    for w in steps[1:]:
        ema = 0.9 * ema + 0.1 * w
    torch.testing.assert_close(model.weight, ema)
