"""Magnitude pruning against torch.nn.utils.prune's own global and per-layer L1 pruning, Zhu &
Gupta's schedule by hand, masks holding through training, fit, and one effect on digits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from reglab import InvalidParameterError
from reglab.data import digits
from reglab.pruning import cubic_sparsity, magnitude_prune
from reglab.training import fit


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(28, 3)
    )


def _layers(model):
    return [m for m in model if isinstance(m, (nn.Linear, nn.Conv1d))]


@pytest.mark.parametrize("amount", [0.3, 0.75])
def test_global_equals_torchs_global_unstructured(amount) -> None:
    ours, theirs = _net(), _net()
    magnitude_prune(ours, amount)
    prune.global_unstructured(
        [(m, "weight") for m in _layers(theirs)], pruning_method=prune.L1Unstructured, amount=amount
    )
    for a, b in zip(_layers(ours), _layers(theirs), strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)
        assert torch.equal(a.weight, b.weight)


def test_layer_equals_torchs_l1_unstructured() -> None:
    ours, theirs = _net(), _net()
    handle = magnitude_prune(ours, 0.4, scope="layer")
    for m in _layers(theirs):
        prune.l1_unstructured(m, "weight", amount=0.4)
    for a, b in zip(_layers(ours), _layers(theirs), strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)
    n = sum(m.weight.numel() for m in _layers(ours))
    expected = sum(round(0.4 * m.weight.numel()) for m in _layers(ours)) / n
    assert handle.sparsity() == pytest.approx(expected)


def test_cubic_schedule_by_hand() -> None:
    assert cubic_sparsity(30, 0.8, 100, begin=10) == pytest.approx(0.8 * (1 - 0.8**3))
    assert cubic_sparsity(5, 0.8, 100, begin=10) == 0.0
    assert cubic_sparsity(500, 0.8, 100, begin=10) == 0.8
    assert cubic_sparsity(0, 0.8, 0) == 0.8


def test_gradual_pruning_follows_the_schedule_and_masks_hold() -> None:
    model = _net()
    x, y = torch.randn(32, 1, 8), torch.randint(0, 3, (32,))
    handle = magnitude_prune(model, 0.8, steps=40, frequency=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    handle.bind(optimizer)
    n = sum(m.weight.numel() for m in _layers(model))
    previous_zeros = None
    for step in range(1, 51):
        optimizer.zero_grad()
        F.cross_entropy(model(x).squeeze(1), y).backward()
        optimizer.step()
        zeros = {id(m): (m.weight == 0).clone() for m in _layers(model)}
        if previous_zeros is not None:  # once pruned, always zero
            assert all((zeros[k] | ~previous_zeros[k]).all() for k in zeros)
        previous_zeros = zeros
        if step % 10 == 0:
            target = cubic_sparsity(step, 0.8, 40)
            assert handle.sparsity() == pytest.approx(round(target * n) / n), step
    assert handle.sparsity() == pytest.approx(round(0.8 * n) / n)
    handle.remove()
    assert all(isinstance(m.weight, nn.Parameter) for m in _layers(model))
    assert not any(prune.is_pruned(m) for m in _layers(model))


def test_errors() -> None:
    with pytest.raises(InvalidParameterError, match=r"'amount' parameter of magnitude_prune"):
        magnitude_prune(_net(), 1.5)
    with pytest.raises(InvalidParameterError, match=r"found no module of type Embedding"):
        magnitude_prune(_net(), 0.5, types=[nn.Embedding])


def test_effect_on_digits_gradual_pruning_keeps_accuracy_at_90_percent_zeros() -> None:
    (x, y), (xt, yt) = digits()

    def accuracy(model) -> float:
        model.eval()
        with torch.no_grad():
            return float((model(xt).argmax(1) == yt).float().mean())

    def train(model, regularization=None, epochs=15) -> None:
        fit(
            model,
            (x, y),
            loss=F.cross_entropy,
            optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
            epochs=epochs,
            batch_size=64,
            seed=0,
            regularization=regularization,
            progress=False,
        )

    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    oneshot = copy.deepcopy(dense)
    train(dense)
    oneshot.load_state_dict(dense.state_dict())
    magnitude_prune(oneshot, 0.95)  # after training, no retraining
    torch.manual_seed(0)
    gradual = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    handle = magnitude_prune(gradual, 0.95, steps=200, frequency=20)
    train(gradual, regularization=handle)  # fit calls after_step: the schedule advances
    assert handle.step == 15 * 22  # 1,347 rows in batches of 64: 22 steps per epoch
    assert handle.sparsity() == pytest.approx(0.95, abs=1e-3)
    dense_acc, oneshot_acc, gradual_acc = accuracy(dense), accuracy(oneshot), accuracy(gradual)
    # measured: dense 0.967, one-shot 95 % after training 0.371, gradual 95 % 0.918
    assert gradual_acc > oneshot_acc + 0.05, (dense_acc, oneshot_acc, gradual_acc)
