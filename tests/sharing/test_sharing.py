"""Hard and soft parameter sharing, L2-SP, multi-task and semi-supervised sharing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab import InvalidParameterError
from reglab.penalties import ToReference
from reglab.sharing import MultiTask, SemiSupervised, l2_sp, tie_weights
from reglab.training import fit


def _train(model: nn.Module, steps: int = 5) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, model[0].in_features)).square().mean().backward()
        optimizer.step()


def test_hard_tie_is_one_parameter_through_training_and_state_dict() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    tie_weights(model[0], "weight", model[2], "weight")
    assert model[2].weight is model[0].weight
    assert len(list(model.parameters())) == 3  # the shared weight is listed once
    _train(model)
    assert model[2].weight is model[0].weight
    clone = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    tie_weights(clone[0], "weight", clone[2], "weight")
    clone.load_state_dict(model.state_dict())
    x = torch.randn(3, 4)
    torch.testing.assert_close(clone(x), model(x))


def test_transposed_tie_is_a_tied_decoder() -> None:
    model = nn.Sequential(nn.Linear(6, 3), nn.Sigmoid(), nn.Linear(3, 6))
    tie_weights(model[0], "weight", model[2], "weight", transpose=True)
    _train(model)
    assert torch.equal(model[2].weight, model[0].weight.T)
    # The decoder's use contributes to the encoder weight's gradient (sum of both uses).
    model.zero_grad()
    x = torch.randn(5, 6)
    model(x).square().sum().backward()
    enc = model[0].weight.detach().clone().requires_grad_()
    h = torch.sigmoid(F.linear(x, enc, model[0].bias))
    F.linear(h, enc.T, model[2].bias).square().sum().backward()
    torch.testing.assert_close(model[0].weight.grad, enc.grad)


def test_tie_errors() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"'weight' has shape \(4, 3\) but the tied tensor would have shape \(3, 4\)",
    ):
        tie_weights(nn.Linear(4, 3), "weight", nn.Linear(3, 4), "weight")
    with pytest.raises(
        InvalidParameterError,
        match=r"Linear has no parameter 'kernel'\. Its parameters: weight, bias",
    ):
        tie_weights(nn.Linear(4, 3), "kernel", nn.Linear(3, 4), "weight")


def test_soft_tying_pulls_two_modules_together() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    model = nn.ModuleDict({"a": a, "b": b})
    reg = reglab.attach(model, {"a": dict(kernel=ToReference(b.weight, l2=1.0))})
    start = (a.weight - b.weight).norm().item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        reg.penalty().backward()
        optimizer.step()
    assert (a.weight - b.weight).norm().item() < 0.01 * start
    assert b.weight.grad is not None  # both sides moved


def test_l2_sp_keeps_fine_tuned_weights_near_the_pretrained_ones() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    pretrained = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    start = [p.detach().clone() for p in pretrained.parameters()]
    distances = {}
    for coef in (0.0, 1.0):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        model.load_state_dict(pretrained.state_dict())
        reg = l2_sp(model, coef) if coef else None
        fit(
            model,
            (x, y),
            loss=F.cross_entropy,
            epochs=20,
            regularization=reg,
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            progress=False,
            seed=0,
        )
        distances[coef] = sum(
            (p - s).norm().item() for p, s in zip(model.parameters(), start, strict=True)
        )
    assert distances[1.0] < 0.5 * distances[0.0]


def test_multitask_returns_one_output_per_head() -> None:
    model = MultiTask(nn.Linear(4, 8), {"digit": nn.Linear(8, 10), "parity": nn.Linear(8, 2)})
    out = model(torch.randn(3, 4))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"digit": (3, 10), "parity": (3, 2)}


def test_semi_supervised_loss_and_gradients() -> None:
    torch.manual_seed(0)
    model = SemiSupervised(nn.Linear(6, 4), nn.Linear(4, 6), nn.Linear(4, 3), recon_weight=0.5)
    x = torch.randn(10, 6)
    y = torch.tensor([0, 2, -1, -1, 1, -1, -1, -1, -1, -1])
    out = model(x)
    expected = F.cross_entropy(out.logits[[0, 1, 4]], y[[0, 1, 4]]) + 0.5 * F.mse_loss(
        out.reconstruction, x
    )
    torch.testing.assert_close(model.loss(out, y), expected)
    # Unlabelled rows reach the classifier through no gradient; they do shape the encoder.
    model.zero_grad()
    only_unlabelled = torch.full((10,), -1)
    model.loss(model(x), only_unlabelled).backward()
    assert model.classifier.weight.grad is None or model.classifier.weight.grad.abs().sum() == 0
    assert model.encoder.weight.grad.abs().sum() > 0
