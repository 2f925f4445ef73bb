"""reglab in a real Lightning Trainer on CPU: the callback trains exactly like the same
training written by hand (with and without gradient accumulation, and with ddp_spawn on 2
processes), logs every term, applies constraints, and reglab's Prechelt criteria stop it."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.multiprocessing.spawn import ProcessExitedException
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L1L2

L = pytest.importorskip("lightning.pytorch")
from reglab.integrations.lightning import EarlyStopping, Regularize  # noqa: E402

warnings.filterwarnings("ignore", module="lightning")


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)).double()

    def training_step(self, batch, _index):
        x, y = batch
        loss = F.mse_loss(self.model(x), y)
        self.log("train_loss", loss, on_epoch=True)
        return loss

    def validation_step(self, batch, _index):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.model(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


RULES = {
    "model.0": dict(kernel=L1L2(1e-3, 1e-2), kernel_constraint=MaxNorm(0.8)),
    "model.2": dict(kernel=L1L2(0.0, 1e-2)),
    "model.1": dict(activity=L1(1e-2)),
}


def data(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(
        torch.randn(n, 6, generator=g).double(), torch.randn(n, 2, generator=g).double()
    )


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        **kwargs,
    )


def by_hand(epochs: int, batch: int, accumulate: int = 1, order=None) -> list[torch.Tensor]:
    """The same training written out: reglab.attach in a plain loop. ``order(epoch)`` gives
    the rows of each epoch (default: in order)."""
    net = Net()
    reg = reglab.attach(net, RULES)
    optimizer = net.configure_optimizers()
    reg.bind(optimizer)
    x_all, y_all = data().tensors
    for epoch in range(epochs):
        rows = order(epoch) if order is not None else torch.arange(len(x_all))
        loader = [(x_all[r], y_all[r]) for r in rows.split(batch)]
        for i, (x, y) in enumerate(loader):
            loss = (F.mse_loss(net.model(x), y) + reg.penalty()) / accumulate
            loss.backward()
            if (i + 1) % accumulate == 0:
                optimizer.step()
                optimizer.zero_grad()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_trainer_with_the_callback_equals_hand_written_training(accumulate: int) -> None:
    net = Net()
    callback = Regularize(RULES)
    trainer(max_epochs=3, callbacks=[callback], accumulate_grad_batches=accumulate).fit(
        net, DataLoader(data(), batch_size=8)
    )
    for got, want in zip(net.parameters(), by_hand(3, 8, accumulate), strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-14)
    assert float(net.model[0].weight.detach().norm(dim=1).max()) <= 0.8 + 1e-9
    assert callback.regularization is None  # removed at fit end
    assert "training_step" not in net.__dict__
    assert not net.model[1]._forward_hooks


def test_terms_and_statistics_are_logged() -> None:
    net = Net()
    t = trainer(max_epochs=1, callbacks=[Regularize(RULES, log_statistics=True)])
    t.fit(net, DataLoader(data(), batch_size=8))
    logged = set(t.callback_metrics)
    assert {"penalty/model.0.kernel", "penalty/model.2.kernel", "penalty/model.1.activity"} <= {
        k.removesuffix("_epoch").removesuffix("_step") for k in logged
    }
    assert any(k.startswith("sparsity/model.1") for k in logged)
    assert any(k.startswith("projected/model.0.weight") for k in logged)


def test_projected_units_are_logged_as_floats_counting_only_units_past_the_bound() -> None:
    # Every unit of model.0 stays far below a bound of 100; Keras' n / (n + 1e-7) factor
    # still rescales each one, which the count must not report.
    net = Net()
    rules = {"model.0": dict(kernel_constraint=MaxNorm(100.0))}
    t = trainer(max_epochs=1, callbacks=[Regularize(rules, log_statistics=True)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.fit(net, DataLoader(data(), batch_size=8))
    assert float(net.model[0].weight.detach().norm(dim=1).max()) < 10.0
    value = t.callback_metrics["projected/model.0.weight_step"]
    assert value.dtype.is_floating_point
    assert value.item() == 0.0
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "floating" in m], messages


def test_folded_weights_train_the_same() -> None:
    net = Net()
    trainer(max_epochs=2, callbacks=[Regularize(RULES, fold=True)]).fit(
        net, DataLoader(data(), batch_size=8)
    )
    for got, want in zip(net.parameters(), by_hand(2, 8), strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-14)


def test_prechelt_criterion_stops_lightning() -> None:
    class Overfits(Net):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.3, momentum=0.9)

    stop = EarlyStopping(monitor="val_loss", criterion="gl", alpha=1.0)
    t = trainer(max_epochs=60, callbacks=[stop], num_sanity_val_steps=0)
    t.fit(
        Overfits(),
        DataLoader(data(16), batch_size=4),
        DataLoader(TensorDataset(*data(64)[32:]), batch_size=32),
    )
    assert stop.reason is not None
    assert stop.reason.startswith("GL = ")
    assert t.current_epoch < 60


def _distributed_order(epoch: int, world: int = 2, batch: int = 4) -> torch.Tensor:
    """The rows one optimizer step of DDP sees: Lightning's DistributedSampler (shuffled, seed
    0, set_epoch) gives rank r every world-th row of a permutation; step k averages the k-th
    batch of every rank."""
    g = torch.Generator().manual_seed(epoch)
    rows = torch.randperm(32, generator=g)
    per_rank = [rows[r::world].split(batch) for r in range(world)]
    return torch.cat([torch.cat(batches) for batches in zip(*per_rank, strict=True)])


def _fit_ddp_spawn(net: Net) -> None:
    t = trainer(max_epochs=2, callbacks=[Regularize(RULES)], strategy="ddp_spawn", devices=2)
    t.fit(net, DataLoader(data(), batch_size=4))


def test_ddp_spawn_on_two_processes_equals_single_process() -> None:
    net = Net()
    try:
        _fit_ddp_spawn(net)
    except ProcessExitedException as error:
        # A spawned rank sometimes aborts in C++ teardown at interpreter exit ("terminate
        # called without an active exception", SIGABRT) after training finished; seen on a
        # 2-core CI machine, unrelated to reglab. Retry that one failure once, from scratch.
        if error.signal_name != "SIGABRT":
            raise
        net = Net()
        _fit_ddp_spawn(net)
    # DDP averages the ranks' gradients: one step on their 8 rows together by hand. Each rank
    # divides its activity term by its own 4 rows, and the average of the two is the 8-row mean.
    expected = by_hand(2, 8, order=_distributed_order)
    for got, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-10, atol=1e-12)
