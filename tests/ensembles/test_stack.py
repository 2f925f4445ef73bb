"""ModelStack == K separately trained models (float64), per-member coefficients and data."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab import InvalidParameterError
from reglab.ensembles import ModelStack, stacked_loss
from reglab.lab import mlp
from reglab.penalties import L1, L1L2, L2

K = 3


class SmallConv(nn.Module):
    """Not an MLP: exercises the vmap path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 3)
        self.head = nn.Linear(3 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x)).flatten(1))


def _members(factory, k: int = K) -> list[nn.Module]:
    torch.manual_seed(0)
    return [factory().double() for _ in range(k)]


FACTORIES = {
    "mlp": (lambda: mlp([5, 16, 16, 4]), (8, 5)),
    "vmap": (SmallConv, (8, 1, 8)),
}


@pytest.mark.parametrize("path", FACTORIES)
def test_stack_trains_exactly_like_separate_models(path: str) -> None:
    factory, shape = FACTORIES[path]
    members = _members(factory)
    separate = [copy.deepcopy(m) for m in members]
    stack = ModelStack(members)
    assert stack.batched_gemm == (path == "mlp")
    g = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(*shape, generator=g, dtype=torch.float64),
            torch.randint(0, 4, shape[:1], generator=g),
        )
        for _ in range(4)
    ]

    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    criterion = stacked_loss(F.cross_entropy)
    for x, y in batches:
        out = stack(x)
        assert out.shape == (K, shape[0], 4)
        opt.zero_grad()
        criterion(out, y).backward()
        opt.step()
    for model in separate:
        o = torch.optim.Adam(model.parameters(), lr=1e-2)
        for x, y in batches:
            o.zero_grad()
            F.cross_entropy(model(x), y).backward()
            o.step()

    x = batches[0][0]
    for k, (model, unstacked) in enumerate(zip(separate, stack.unstack(), strict=True)):
        torch.testing.assert_close(stack(x)[k], model(x), rtol=1e-10, atol=1e-12)
        for (name, p), q in zip(model.named_parameters(), unstacked.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("path", FACTORIES)
def test_per_member_data(path: str) -> None:
    factory, shape = FACTORIES[path]
    members = _members(factory)
    stack = ModelStack(members)
    xs = torch.randn(K, *shape, dtype=torch.float64)
    out = stack(xs, per_member=True)
    for k, model in enumerate(members):
        torch.testing.assert_close(out[k], model(xs[k]))


def test_per_member_coefficients_weight_and_activity() -> None:
    coefs = torch.tensor([0.0, 1e-2, 1e-1], dtype=torch.float64)
    members = _members(lambda: mlp([5, 16, 4]))
    separate = [copy.deepcopy(m) for m in members]
    stack = ModelStack(members)
    reg = reglab.attach(stack, {"fc*": dict(kernel=L2(coefs)), "act0": dict(activity=L1(coefs))})
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 4, (8,))
    opt = torch.optim.SGD(stack.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (stacked_loss(F.cross_entropy)(stack(x), y) + reg.penalty()).backward()
        opt.step()
    for k, model in enumerate(separate):
        r = reglab.attach(
            model,
            {"fc*": dict(kernel=L2(coefs[k].item())), "act0": dict(activity=L1(coefs[k].item()))},
        )
        o = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            o.zero_grad()
            (F.cross_entropy(model(x), y) + r.penalty()).backward()
            o.step()
        torch.testing.assert_close(stack(x)[k], model(x), rtol=1e-10, atol=1e-12)


def test_state_dict_round_trip_and_member_layout() -> None:
    stack = ModelStack(lambda: mlp([5, 16, 4]), k=4)
    assert tuple(stack.state_dict()["fc0.weight"].shape) == (4, 16, 5)
    other = ModelStack(lambda: mlp([5, 16, 4]), k=4)
    other.load_state_dict(stack.state_dict())
    x = torch.randn(2, 5)
    torch.testing.assert_close(other(x), stack(x))


def test_dropout_masks_differ_between_members() -> None:
    layer = nn.Sequential(nn.Linear(4, 64), nn.Dropout(0.5))
    stack = ModelStack([layer, copy.deepcopy(layer)])  # identical weights: only masks differ
    out = stack(torch.ones(1, 4))
    assert not torch.equal(out[0] == 0, out[1] == 0)


class NormedConv(SmallConv):
    """A 1-D LayerNorm weight: not a kernel of the member, though stacked it is (K, d)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


@pytest.mark.parametrize("factory", [lambda: mlp([5, 16, 16, 4]), NormedConv])
def test_kernel_norms_are_per_member(factory) -> None:
    members = _members(factory)
    with torch.no_grad():  # members of clearly different size
        for i, member in enumerate(members):
            for p in member.parameters():
                p.mul_(i + 1)
    stack = ModelStack(members)
    got = stack.kernel_norms()
    # One model's norm of its concatenated kernels (Linear/Conv weights only), per member.
    want = [
        torch.cat(
            [p.flatten() for n, p in m.named_parameters() if n.endswith("weight") and p.ndim > 1]
        )
        .norm()
        .item()
        for m in members
    ]
    assert got.shape == (K,)
    torch.testing.assert_close(got, torch.tensor(want, dtype=got.dtype), rtol=1e-12, atol=0)


def test_errors() -> None:
    with pytest.raises(
        InvalidParameterError, match=r"'k' parameter of ModelStack must be an int >= 1\. Got 0"
    ):
        ModelStack(lambda: nn.Linear(2, 2), k=0)
    with pytest.raises(
        InvalidParameterError,
        match=r"member 1 differs from member 0 \(Linear vs Linear; first differences: "
        r"'bias': \(2,\) float32 vs \(3,\) float32; 'weight': \(2, 2\) float32 vs \(3, 2\) float32\)",
    ):
        ModelStack([nn.Linear(2, 2), nn.Linear(2, 3)])
    # Issue 24, case 14: a dtype difference raised TypeError while building this message.
    with pytest.raises(
        InvalidParameterError,
        match=r"member 1 differs .* 'fc0\.bias': \(8,\) float32 vs \(8,\) float64; "
        r"'fc0\.weight': \(8, 4\) float32 vs \(8, 4\) float64; 'fc1\.bias'",
    ):
        ModelStack([mlp([4, 8, 2]), mlp([4, 8, 2]).double()])
    with pytest.raises(
        InvalidParameterError, match=r"takes a sequence of models or a factory, not one model"
    ):
        ModelStack(nn.Linear(2, 2))
    stack = ModelStack(lambda: nn.Linear(2, 2), k=2)
    with pytest.raises(
        ValueError,
        match=r"per_member=True\) needs inputs of shape \(K=2, B, \.\.\.\)\. Got shape \(3, 2\)",
    ):
        stack(torch.randn(3, 2), per_member=True)
    conv = ModelStack(SmallConv, k=2)
    reglab.attach(conv, {"conv": dict(activity=L1())})
    with pytest.raises(
        InvalidParameterError, match=r"through torch\.vmap, where forward hooks cannot run"
    ):
        conv(torch.randn(2, 1, 8))


@pytest.mark.parametrize("folded", [False, True], ids=["loss", "folded"])
def test_per_member_elastic_net_with_zero_members_equals_separate_models(folded: bool) -> None:
    """Members without an L1 or L2 term (zero coefficients, skipped on the CPU) and members
    with both train exactly like separate models, in the loss and folded into Adam."""
    l1 = torch.tensor([0.0, 0.0, 1e-2, 1e-2], dtype=torch.float64)
    l2 = torch.tensor([0.0, 1e-2, 0.0, 1e-1], dtype=torch.float64)
    members = _members(lambda: mlp([5, 16, 4]), k=4)
    separate = [copy.deepcopy(m) for m in members]
    stack = ModelStack(members)
    reg = reglab.attach(stack, {"fc*": dict(kernel=L1L2(l1, l2))})
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 4, (8,))
    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    if folded:
        reg.fold_into(opt)
    for _ in range(4):
        opt.zero_grad()
        (stacked_loss(F.cross_entropy)(stack(x), y) + reg.penalty()).backward()
        opt.step()
    for k, model in enumerate(separate):
        r = reglab.attach(model, {"fc*": dict(kernel=L1L2(l1[k].item(), l2[k].item()))})
        o = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(4):
            o.zero_grad()
            (F.cross_entropy(model(x), y) + r.penalty()).backward()
            o.step()
        torch.testing.assert_close(stack(x)[k], model(x), rtol=1e-10, atol=1e-12)


def test_running_statistics_are_per_member_and_follow_the_stack_mode() -> None:
    """BatchNorm on the vmap path: each member's running statistics are updated from its own
    batch, as alone; in eval mode the stack uses them (issue 26: convnet trials stack)."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    stack = ModelStack(models)
    x = torch.randn(2, 8, 3)  # (K, B, F)
    stack.train()
    out = stack(x, per_member=True)
    for k, model in enumerate(models):
        model.train()
        assert torch.allclose(out[k], model(x[k]), atol=1e-5)
        assert torch.allclose(stack.get_parameter("0.weight")[k], model[0].weight)
        assert torch.allclose(stack.get_buffer("1.running_mean")[k], model[1].running_mean)
        assert torch.allclose(stack.get_buffer("1.running_var")[k], model[1].running_var)
    stack.eval()
    out = stack(x, per_member=True)
    for k, model in enumerate(models):
        model.eval()
        assert torch.allclose(out[k], model(x[k]), atol=1e-5)
    for k, member in enumerate(stack.unstack()):
        assert torch.allclose(member[1].running_mean, models[k][1].running_mean)
