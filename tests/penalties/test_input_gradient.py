"""InputGradient against torch.autograd.functional.jacobian on small nets, its double backward
against finite differences (gradcheck), the random-projection estimator's mean, GradScaler,
fit, and one effect on digits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reglab import InvalidParameterError
from reglab.data import digits
from reglab.penalties import InputGradient
from reglab.training import fit


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _data():
    g = torch.Generator().manual_seed(2)
    return torch.randn(5, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])


def test_loss_target_equals_the_per_example_jacobian() -> None:
    net, (x, y) = _net(), _data()
    # (N,) per-example losses -> (N, N, D) Jacobian; example i depends on row i only
    jac = torch.autograd.functional.jacobian(
        lambda inp: F.cross_entropy(net(inp), y, reduction="none"), x
    )
    expected = 0.3 * torch.stack([jac[i, i].square().sum() for i in range(5)]).mean()
    x = x.clone().requires_grad_(True)
    got = InputGradient(0.3)(x, F.cross_entropy(net(x), y))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_exact_jacobian_target_equals_the_frobenius_norm() -> None:
    net, (x, _) = _net(), _data()
    jac = torch.autograd.functional.jacobian(net, x)  # (N, C, N, D)
    expected = 0.5 * torch.stack([jac[i, :, i].square().sum() for i in range(5)]).mean()
    x = x.clone().requires_grad_(True)
    got = InputGradient(0.5, target="jacobian", n_projections=None)(x, net(x))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_random_projections_are_unbiased() -> None:
    net, (x, _) = _net(), _data()
    x = x.clone().requires_grad_(True)
    out = net(x)
    exact = InputGradient(1.0, target="jacobian", n_projections=None)(x, out).item()
    g = torch.Generator().manual_seed(0)
    estimator = InputGradient(1.0, target="jacobian", n_projections=4, generator=g)
    mean = torch.stack([estimator(x, out).detach() for _ in range(500)]).mean().item()
    assert mean == pytest.approx(exact, rel=0.03), (mean, exact)


@pytest.mark.parametrize("target", ["loss", "jacobian"])
def test_double_backward_matches_finite_differences(target) -> None:
    net, (x, y) = _net(), _data()
    names = [n for n, _ in net.named_parameters()]
    penalty = InputGradient(0.7, target=target, n_projections=None)

    def value(*weights):
        inp = x.clone().requires_grad_(True)
        out = torch.func.functional_call(net, dict(zip(names, weights, strict=True)), (inp,))
        return penalty(inp, F.cross_entropy(out, y) if target == "loss" else out)

    weights = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    assert torch.autograd.gradcheck(value, weights)


def test_grad_scaler_gives_the_same_value() -> None:
    net, (x, y) = _net(), _data()
    x = x.float().requires_grad_(True)
    net = net.float()
    loss = F.cross_entropy(net(x), y)
    plain = InputGradient(1.0)(x, loss)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**14)
    torch.testing.assert_close(InputGradient(1.0)(x, loss, scaler=scaler), plain)


def test_loss_for_in_fit_equals_the_explicit_loop() -> None:
    (x, y), ours = _data(), _net()
    theirs = copy.deepcopy(ours)
    penalty = InputGradient(0.2)
    loss = penalty.loss_for(ours)
    fit(
        ours,
        (x, y),
        loss=loss,
        optimizer=torch.optim.SGD(ours.parameters(), lr=0.1),
        epochs=3,
        batch_size=5,
        shuffle=False,
        progress=False,
    )
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for _ in range(3):
        inp = x.clone().requires_grad_(True)
        data = F.cross_entropy(theirs(inp), y)
        optimizer.zero_grad()
        (data + penalty(inp, data)).backward()
        optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    ours.eval()
    assert torch.equal(loss(ours(x), y), F.cross_entropy(ours(x), y))  # eval: the plain loss
    loss.remove()


def test_errors() -> None:
    net, (x, y) = _net(), _data()
    with pytest.raises(InvalidParameterError, match=r"needs the input to require grad"):
        InputGradient()(x, F.cross_entropy(net(x), y))
    x = x.clone().requires_grad_(True)
    with pytest.raises(InvalidParameterError, match=r"takes the batch-mean loss"):
        InputGradient()(x, net(x))
    with pytest.raises(InvalidParameterError, match=r"'target' parameter of InputGradient"):
        InputGradient(target="hessian")
    assert InputGradient.from_config(InputGradient(0.2, "jacobian").get_config()).target == (
        "jacobian"
    )


def test_effect_on_digits_the_input_gradient_shrinks() -> None:
    (x, y), (xt, yt) = digits()

    def train(penalty):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
        fit(
            model,
            (x, y),
            loss=penalty.loss_for(model) if penalty else F.cross_entropy,
            optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
            epochs=10,
            batch_size=64,
            seed=0,
            progress=False,
        )
        model.eval()
        inp = xt.clone().requires_grad_(True)
        measured = InputGradient(1.0)(inp, F.cross_entropy(model(inp), yt)).item()
        return measured, float((model(xt).argmax(1) == yt).float().mean())

    plain, plain_accuracy = train(None)
    smooth, accuracy = train(InputGradient(1.0))
    assert smooth < 0.5 * plain, (smooth, plain)
    assert accuracy > 0.85, (accuracy, plain_accuracy)
