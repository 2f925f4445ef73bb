"""R-Drop and the confidence penalty against their formulas written out (NumPy, the R-Drop
authors' ``compute_kl_loss``), through ``fit`` and ``attach``, and one effect each on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab import InvalidParameterError
from reglab.data import digits
from reglab.losses import ConfidencePenalty, FocalLoss, RDrop, r_drop, symmetric_kl
from reglab.penalties import NegativeEntropy
from reglab.training import fit


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_symmetric_kl_by_hand_and_against_the_authors_code() -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(6, 4)) * 3, rng.normal(size=(6, 4)) * 3
    p, q = _np_softmax(z1), _np_softmax(z2)
    expected = 0.5 * np.mean((p * np.log(p / q)).sum(-1) + (q * np.log(q / p)).sum(-1))
    a, b = torch.tensor(z1), torch.tensor(z2)
    assert symmetric_kl(a, b).item() == pytest.approx(expected, rel=1e-12)
    # dropout-R/compute_kl_loss: kl_div(log_softmax(p), softmax(q)) summed over the batch, / 2
    p_loss = F.kl_div(F.log_softmax(a, -1), F.softmax(b, -1), reduction="none").sum()
    q_loss = F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction="none").sum()
    assert symmetric_kl(a, b).item() * 6 == pytest.approx(((p_loss + q_loss) / 2).item())
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    total = 0.5 * (F.cross_entropy(a, y) + F.cross_entropy(b, y)) + 2.0 * expected
    assert r_drop(a, b, y, 2.0).item() == pytest.approx(total.item(), rel=1e-12)


def _dropout_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))


def test_the_hook_runs_a_second_dropout_pass() -> None:
    net = _dropout_net()
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    torch.manual_seed(1)
    z1, z2 = net(x), net(x)
    assert not torch.equal(z1, z2)  # two masks
    expected = r_drop(z1, z2, y, 0.7)
    rdrop = RDrop(net, alpha=0.7)
    torch.manual_seed(1)
    assert torch.equal(rdrop(net(x), y), expected)
    assert torch.equal(RDrop(alpha=0.7)(z1, z2, y), expected)
    net.eval()
    z = net(x)
    assert torch.equal(rdrop(z, y), F.cross_entropy(z, y))  # eval: the plain loss
    rdrop.remove()
    net.train()
    net(x)
    assert rdrop._input is None  # the hook is gone
    with pytest.raises(InvalidParameterError, match=r"RDrop without a model needs both"):
        RDrop(alpha=1.0)(z, y)
    with pytest.raises(InvalidParameterError, match=r"'alpha' parameter of RDrop"):
        RDrop(net, alpha=-1.0)


def test_rdrop_in_fit_equals_the_explicit_loop() -> None:
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    ours, theirs = _dropout_net(), _dropout_net()
    torch.manual_seed(5)
    fit(
        ours,
        (x, y),
        loss=RDrop(ours, alpha=1.0),
        optimizer=torch.optim.SGD(ours.parameters(), lr=0.1),
        epochs=2,
        batch_size=32,
        shuffle=False,
        progress=False,
    )
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    torch.manual_seed(5)
    for _ in range(2):
        loss = r_drop(theirs(x), theirs(x), y, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_confidence_penalty_by_hand_and_as_an_attached_activity_penalty() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 5)) * 2
    y = rng.integers(0, 5, size=10)
    p = _np_softmax(z)
    ce = -np.mean(np.log(p[np.arange(10), y]))
    h = -(p * np.log(p)).sum(-1)
    got = ConfidencePenalty(0.4)(torch.tensor(z), torch.tensor(y))
    assert got.item() == pytest.approx(ce - 0.4 * h.mean(), rel=1e-12)
    # The same term as reglab.penalties.NegativeEntropy on the logits layer's output.
    model = nn.Sequential(nn.Linear(3, 5)).double()
    reg = reglab.attach(model, {"0": dict(activity=NegativeEntropy(0.4))})
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.tensor(y)
    out = model(x)
    torch.testing.assert_close(
        F.cross_entropy(out, y) + reg.penalty(), ConfidencePenalty(0.4)(out, y)
    )


@pytest.mark.parametrize(
    ("gamma", "eps", "form"), [(2.0, 0.0, "uniform"), (1.5, 0.1, "others"), (0.0, 0.2, "uniform")]
)
def test_focal_loss_by_hand(gamma, eps, form) -> None:
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(7, 4)) * 2, rng.integers(0, 4, size=7)
    p = _np_softmax(z)
    onehot = np.eye(4)[y]
    q = onehot * (1 - eps) + (eps / 4 if form == "uniform" else (1 - onehot) * eps / 3)
    expected = np.mean(-(q * (1 - p) ** gamma * np.log(p)).sum(-1))
    zt, yt = torch.tensor(z), torch.tensor(y)
    got = FocalLoss(gamma, eps, form)(zt, yt)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    if gamma == 0 and form == "uniform":
        theirs = F.cross_entropy(zt, yt, label_smoothing=eps)
        torch.testing.assert_close(got, theirs, rtol=1e-13, atol=0)


def _train_digits(loss_for, seed: int = 0, epochs: int = 20):
    (x, y), (xt, yt) = digits()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    fit(
        model,
        (x, y),
        loss=loss_for(model),
        optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
        epochs=epochs,
        batch_size=64,
        seed=seed,
        progress=False,
    )
    return model, xt, yt


def test_effect_on_digits_rdrop_makes_dropout_passes_agree() -> None:
    def disagreement(model, xt) -> float:
        model.train()  # two dropout sub-models on the test set
        torch.manual_seed(123)
        with torch.no_grad():
            return float(symmetric_kl(model(xt), model(xt)))

    plain, xt, _ = _train_digits(lambda m: F.cross_entropy)
    rdrop, _, _ = _train_digits(lambda m: RDrop(m, alpha=2.0))
    plain_kl, rdrop_kl = disagreement(plain, xt), disagreement(rdrop, xt)
    assert rdrop_kl < 0.75 * plain_kl, (rdrop_kl, plain_kl)  # measured 0.108 vs 0.180


def test_effect_on_digits_confidence_penalty_raises_the_predictive_entropy() -> None:
    def mean_entropy(model, xt) -> float:
        model.eval()
        with torch.no_grad():
            p = F.softmax(model(xt), -1)
            return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())

    plain, xt, yt = _train_digits(lambda m: F.cross_entropy)
    confident, _, _ = _train_digits(lambda m: ConfidencePenalty(1.0))
    assert mean_entropy(confident, xt) > 2 * mean_entropy(plain, xt)
    confident.eval()
    accuracy = float((confident(xt).argmax(1) == yt).float().mean())
    assert accuracy > 0.9  # still a classifier


def test_effect_on_digits_focal_loss_lowers_the_confidence_on_easy_examples() -> None:
    def mean_confidence(model, xt) -> float:
        model.eval()
        with torch.no_grad():
            return float(F.softmax(model(xt), -1).amax(-1).mean())

    plain, xt, yt = _train_digits(lambda m: F.cross_entropy)
    focal, _, _ = _train_digits(lambda m: FocalLoss(gamma=3.0))
    plain_confidence, focal_confidence = mean_confidence(plain, xt), mean_confidence(focal, xt)
    # measured: 0.944 with cross-entropy, 0.821 with γ = 3 (test accuracy 0.964 for both)
    assert focal_confidence < plain_confidence - 0.05, (focal_confidence, plain_confidence)
    assert float((focal(xt).argmax(1) == yt).float().mean()) > 0.9
