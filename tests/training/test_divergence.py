"""fit stops at the first non-finite loss or penalty term, names it, and keeps the last
finite weights; custom penalties and losses that return non-scalars are named."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab import InvalidParameterError
from reglab.penalties import L2
from reglab.training import Callback, EarlyStopping, fit
from reglab.training.divergence import FiniteWatch


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def test_an_overflowing_penalty_term_stops_training_at_its_step() -> None:
    model = _mlp()
    # fc2's L2 overflows float32 (1e37 * sum(w^2) > 3.4e38); fc0's stays finite.
    reg = reglab.attach(model, {"0": {"kernel": L2(1e-4)}, "2": {"kernel": L2(1e37)}})
    with torch.no_grad():
        model[2].weight.mul_(30)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(RuntimeWarning, match=r"penalty/2.kernel is inf at step 1 \(epoch 1\)"):
        history = fit(
            model,
            _data(),
            loss=F.cross_entropy,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=3,
            regularization=reg,
            progress=False,
        )
    assert history.diverged == "penalty/2.kernel is inf at step 1 (epoch 1)"
    assert history.stop_reason == f"diverged: {history.diverged}"
    assert len(history) == 0  # the diverged epoch is not logged
    for key, value in model.state_dict().items():  # the bad step updated nothing
        assert torch.equal(value, before[key]), key


class _PoisonAt(Callback):
    """Writes NaN into a weight after optimizer step ``step`` (a bad update whose own loss
    was finite), and keeps each epoch's starting weights."""

    def __init__(self, step: int) -> None:
        self.step, self.starts = step, []

    def on_epoch_begin(self, state) -> None:
        self.starts.append({k: v.clone() for k, v in state.model.state_dict().items()})

    def on_batch_end(self, state) -> None:
        if state.step == self.step:
            with torch.no_grad():
                state.model[0].weight[0, 0] = float("nan")


def test_non_finite_weights_are_replaced_by_the_epoch_start() -> None:
    model = _mlp()
    poison = _PoisonAt(step=13)  # 8 steps per epoch: in epoch 2
    with pytest.warns(RuntimeWarning, match="restored the weights of the epoch's start"):
        history = fit(
            model,
            _data(),
            loss=F.cross_entropy,
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            epochs=4,
            batch_size=32,
            callbacks=[poison],
            progress=False,
        )
    assert history.diverged == "loss is nan at step 14 (epoch 2)"
    assert len(history) == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, poison.starts[1][key]), key


def test_a_bad_last_step_is_caught_by_the_epoch_end_parameter_check() -> None:
    model = _mlp()
    poison = _PoisonAt(step=8)  # the last step of epoch 1: no later loss sees it
    with pytest.warns(RuntimeWarning):
        history = fit(
            model,
            _data(),
            loss=F.cross_entropy,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=2,
            batch_size=32,
            callbacks=[poison],
            progress=False,
        )
    assert history.diverged == "a parameter is non-finite after the epoch's last step (epoch 1)"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_early_stopping_restores_its_best_weights_after_a_divergence() -> None:
    model = nn.Linear(4, 2)
    calls = {"train": 0}

    def loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = F.cross_entropy(output, y)
        if model.training:
            calls["train"] += 1
            if calls["train"] > 20:  # epoch 3, step 21
                return value * float("nan")
        return value

    stopper = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    data = _data()
    with pytest.warns(RuntimeWarning, match="loss is nan at step 21"):
        history = fit(
            model,
            data,
            data,
            loss=loss,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            epochs=6,
            batch_size=32,
            callbacks=[stopper],
            progress=False,
        )
    assert history.diverged == "loss is nan at step 21 (epoch 3)"
    assert len(history) == 2
    best = stopper.best_weights
    assert best is not None
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key].to(value.dtype)), key


def test_the_device_watch_names_the_first_bad_step_when_read_later() -> None:
    watch = FiniteWatch(torch.device("cpu"), every=4, lazy=True)  # the accelerator path
    one = torch.tensor(1.0)
    assert watch.add(1, {"loss": one, "penalty/a": one}) is None
    assert watch.add(2, {"loss": one, "penalty/a": torch.tensor(float("inf"))}) is None
    assert watch.add(3, {"loss": torch.tensor(float("nan")), "penalty/a": one}) is None
    assert watch.add(4, {"loss": one, "penalty/a": one}) == "penalty/a is inf at step 2"
    assert watch.flush() is None  # read once
    eager = FiniteWatch(torch.device("cpu"))
    assert eager.add(7, {"loss": torch.tensor(-float("inf"))}) == "loss is -inf at step 7"


def test_losses_and_penalties_that_are_not_scalars_are_named() -> None:
    model = _mlp()
    data = _data()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidParameterError, match=r"'loss' parameter of fit .* shape \(32,\)"):
        fit(
            model,
            data,
            loss=lambda o, y: F.cross_entropy(o, y, reduction="none"),
            optimizer=sgd,
            epochs=1,
            progress=False,
        )

    def rowwise(w: torch.Tensor) -> torch.Tensor:
        return w.abs().sum(1)  # forgot the last sum

    reg = reglab.attach(model, {"0": {"kernel": rowwise}})
    with pytest.raises(
        InvalidParameterError,
        match=r"penalty .*rowwise of rule '0' \(0.kernel\) must return a 0-dim tensor.*\(16,\)",
    ):
        fit(
            model,
            data,
            loss=F.cross_entropy,
            optimizer=sgd,
            epochs=1,
            regularization=reg,
            progress=False,
        )
    reg.remove()
    reg = reglab.attach(model, {nn.ReLU: {"activity": lambda h: float(h.detach().sum())}})
    with pytest.raises(InvalidParameterError, match=r"rule ReLU \(1.activity\) .* Got float"):
        fit(
            model,
            data,
            loss=F.cross_entropy,
            optimizer=sgd,
            epochs=1,
            regularization=reg,
            progress=False,
        )
    reg.remove()

    class Vector:
        def penalty(self) -> torch.Tensor:
            return torch.ones(3)

    with pytest.raises(InvalidParameterError, match=r"Vector.penalty\(\) must return a 0-dim"):
        fit(
            model,
            data,
            loss=F.cross_entropy,
            optimizer=sgd,
            epochs=1,
            regularization=Vector(),
            progress=False,
        )


class _Constant:
    """A regularizer whose penalty is a fixed (finite) number, in a given dtype."""

    def __init__(self, value: float, dtype: torch.dtype) -> None:
        self.value, self.dtype = value, dtype

    def penalty(self) -> torch.Tensor:
        return torch.tensor(self.value, dtype=self.dtype)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(3.37e37, torch.float32), (1e39, torch.float64)],
    ids=["float32-near-max", "float64-beyond-float32"],
)
def test_a_large_finite_penalty_is_logged_finite(value: float, dtype: torch.dtype) -> None:
    # Issue 24, case 8: a finite penalty of 3.37e37 was logged as inf (the epoch's sum of
    # value · batch size overflowed float32), and a float64 one beyond float32's range
    # was taken for a divergence.
    model = _mlp()
    history = fit(
        model,
        _data(),
        loss=F.cross_entropy,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=1,
        regularization=_Constant(value, dtype),
        batch_size=16,
        progress=False,
    )
    assert history.diverged is None
    logged = history.epochs[0]["penalty"]
    assert logged == pytest.approx(float(torch.tensor(value, dtype=dtype)), rel=1e-6)


def test_empty_data_is_an_error_not_a_divergence() -> None:
    # Issue 24, case 14: fit on empty tensors reported "diverged: loss is nan at step 1".
    model = _mlp()
    empty = (torch.empty(0, 4), torch.empty(0, dtype=torch.long))
    kwargs = dict(loss=F.cross_entropy, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(
        InvalidParameterError,
        match=r"^The 'train' parameter of fit must be \(x, y\) with at least one sample\. Got '0 inputs' instead\.$",
    ):
        fit(model, empty, epochs=1, progress=False, **kwargs)
    with pytest.raises(
        InvalidParameterError, match=r"^The 'val' parameter of fit .* Got '0 inputs'"
    ):
        fit(model, _data(), empty, epochs=1, progress=False, **kwargs)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*empty), batch_size=4)
    batches = [(torch.empty(0, 4), torch.empty(0, dtype=torch.long))]  # an empty batch
    with pytest.raises(
        InvalidParameterError,
        match=r"^The 'train' data of fit yielded an empty batch \(inputs of shape \(0, 4\)\)",
    ):
        fit(model, batches, epochs=1, progress=False, **kwargs)
    with pytest.raises(InvalidParameterError, match=r"^The 'train' data of fit yielded no batch"):
        fit(model, loader, epochs=1, progress=False, **kwargs)
