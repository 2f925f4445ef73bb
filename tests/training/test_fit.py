"""fit(): batching, regularization, constraints, multi-task losses, callbacks, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import reglab
from reglab import InvalidParameterError
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L2
from reglab.training import Callback, accuracy, fit


def _data(n: int = 64, d: int = 6, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_in_memory_tensors_and_dataloader_train_identically() -> None:
    x, y = _data()
    a, b = _model(), _model()
    common = dict(loss=F.cross_entropy, epochs=3, progress=False)
    fit(
        a,
        (x, y),
        optimizer=torch.optim.SGD(a.parameters(), lr=0.1),
        batch_size=16,
        shuffle=False,
        **common,
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    fit(b, loader, optimizer=torch.optim.SGD(b.parameters(), lr=0.1), **common)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_history_logs_losses_metrics_penalties_and_timing() -> None:
    x, y = _data()
    model = _model()
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1e-3)), "1": dict(activity=L1(1e-3))})
    history = fit(
        model,
        (x, y),
        (x, y),
        loss=F.cross_entropy,
        metrics={"acc": accuracy},
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        epochs=5,
        regularization=reg,
        progress=False,
        seed=0,
    )
    assert len(history) == 5
    assert history.stop_reason is None
    for key in (
        "loss",
        "acc",
        "val_loss",
        "val_acc",
        "penalty",
        "penalty/0.kernel",
        "penalty/2.kernel",
        "penalty/1.activity",
        "step_time",
        "epoch_time",
    ):
        assert key in history, key
    assert history["loss"][-1] < history["loss"][0]
    last = history.epochs[-1]
    assert last["penalty"] == pytest.approx(
        last["penalty/0.kernel"] + last["penalty/2.kernel"] + last["penalty/1.activity"], rel=1e-5
    )
    with pytest.raises(KeyError, match=r"'nope' was not logged\. Logged: penalty"):
        history["nope"]


def test_one_step_equals_a_hand_written_step() -> None:
    x, y = _data(n=8)
    a, b = _model(), _model()
    reg = reglab.attach(a, {nn.Linear: dict(kernel=L2(0.05))})
    fit(
        a,
        (x, y),
        loss=F.cross_entropy,
        optimizer=torch.optim.SGD(a.parameters(), lr=0.5),
        epochs=1,
        batch_size=8,
        shuffle=False,
        regularization=reg,
        progress=False,
    )
    loss = F.cross_entropy(b(x), y) + 0.05 * (
        b[0].weight.square().sum() + b[2].weight.square().sum()
    )
    loss.backward()
    with torch.no_grad():
        for p in b.parameters():
            p -= 0.5 * p.grad
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_constraints_are_applied_after_every_step() -> None:
    x, y = _data()
    model = _model()
    seen = []

    class Check(Callback):
        def on_batch_end(self, state) -> None:
            seen.append(state.model[0].weight.norm(dim=1).max().item())

    reg = reglab.attach(model, {"0": dict(kernel_constraint=MaxNorm(0.2))})
    fit(
        model,
        (x, y),
        loss=F.cross_entropy,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        epochs=2,
        batch_size=8,
        regularization=reg,
        callbacks=[Check()],
        progress=False,
    )
    assert len(seen) == 16
    assert max(seen) <= 0.2 + 1e-6


def test_per_task_losses_are_weighted_and_logged() -> None:
    x, y = _data(n=8)
    targets = {"a": y, "b": y % 2}

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 2)

        def forward(self, x):
            return {"a": self.a(x), "b": self.b(x)}

    model = TwoHeads()
    before = {k: F.cross_entropy(v, targets[k]).item() for k, v in model(x).items()}
    history = fit(
        model,
        (x, targets),
        loss={"a": F.cross_entropy, "b": F.cross_entropy},
        loss_weights={"b": 0.25},
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        epochs=1,
        batch_size=8,
        progress=False,
    )
    logs = history.epochs[0]
    assert logs["loss/a"] == pytest.approx(before["a"], rel=1e-6)
    assert logs["loss/b"] == pytest.approx(before["b"], rel=1e-6)
    assert logs["loss"] == pytest.approx(before["a"] + 0.25 * before["b"], rel=1e-6)


def test_transform_applies_to_training_batches_only() -> None:
    x, y = _data(n=16)
    calls = []

    def transform(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return batch

    model = _model()
    fit(
        model,
        (x, y),
        (x, y),
        loss=F.cross_entropy,
        transform=transform,
        epochs=2,
        batch_size=8,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        progress=False,
    )
    assert calls == [8, 8, 8, 8]


def test_callback_hooks_run_in_order_and_can_stop() -> None:
    events = []

    class Recorder(Callback):
        def on_train_begin(self, state):
            events.append("begin")

        def on_epoch_begin(self, state):
            events.append(f"epoch{state.epoch}")

        def on_batch_end(self, state):
            events.append("batch")

        def on_epoch_end(self, state):
            events.append("end")
            if state.epoch == 1:
                state.stop, state.stop_reason = True, "enough"

        def on_train_end(self, state):
            events.append("done")

    x, y = _data(n=8)
    model = _model()
    history = fit(
        model,
        (x, y),
        loss=F.cross_entropy,
        epochs=5,
        batch_size=8,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[Recorder()],
        progress=False,
    )
    assert events == ["begin", "epoch0", "batch", "end", "epoch1", "batch", "end", "done"]
    assert history.stop_reason == "enough"


def test_errors() -> None:
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        InvalidParameterError, match=r"'epochs' parameter of fit must be an int >= 1\. Got 0"
    ):
        fit(model, (x, y), loss=F.cross_entropy, optimizer=opt, epochs=0)
    with pytest.raises(
        InvalidParameterError,
        match=r"'regularization' parameter of fit must be objects with a penalty\(\) method",
    ):
        fit(model, (x, y), loss=F.cross_entropy, optimizer=opt, epochs=1, regularization=L2())
    with pytest.raises(
        InvalidParameterError,
        match=r"'train' parameter of fit must be \(x, y\) with as many targets as inputs\. Got '64 inputs, 3 targets'",
    ):
        fit(model, (x, y[:3]), loss=F.cross_entropy, optimizer=opt, epochs=1, progress=False)
