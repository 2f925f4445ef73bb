"""The TensorBoard callback: event files read back hold the penalty terms, output sparsity,
constraint activity and epoch logs that fit computed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L2
from reglab.training import Callback, TensorBoard, fit

accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_event_files_hold_terms_statistics_and_epoch_logs(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    reg = reglab.attach(
        model,
        {"0": dict(kernel=L2(1e-2), kernel_constraint=MaxNorm(0.3)), "1": dict(activity=L1(1e-2))},
    )
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    at_bound: list[int] = []

    class AtBound(Callback):
        """After each step's projection: the units MaxNorm(0.3) just put on the bound."""

        def on_batch_end(self, state) -> None:
            norms = model[0].weight.detach().norm(dim=1)
            at_bound.append(int(((norms - 0.3).abs() < 1e-6).sum()))

    history = fit(
        model,
        (x, y),
        (x, y),
        loss=nn.functional.cross_entropy,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        epochs=3,
        batch_size=16,
        regularization=reg,
        callbacks=[TensorBoard(tmp_path, every=2), AtBound()],
        progress=False,
    )
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "step/loss",
        "step/penalty",
        "step/penalty/0.kernel",
        "step/penalty/1.activity",
        "step/sparsity/1",
        "step/projected/0.weight",
    } <= tags
    assert {"epoch/loss", "epoch/val_loss", "epoch/penalty/0.kernel"} <= tags
    steps = [e.step for e in events.Scalars("step/loss")]
    assert steps == list(range(2, 13, 2))  # 4 steps per epoch x 3 epochs, every 2nd
    sparsity = [e.value for e in events.Scalars("step/sparsity/1")]
    assert all(0.0 < v < 1.0 for v in sparsity)  # ReLU codes: some exact zeros
    projected = [e.value for e in events.Scalars("step/projected/0.weight")]
    assert projected == at_bound[1::2]  # steps 2, 4, ...: units that were past the bound
    assert at_bound[0] == 16  # lr 0.5 pushes every unit past the bound at first
    assert 0 < sum(projected) < 16 * len(projected)  # later, some
    val = [e.value for e in events.Scalars("epoch/val_loss")]
    assert val == pytest.approx(history["val_loss"], rel=1e-6)
