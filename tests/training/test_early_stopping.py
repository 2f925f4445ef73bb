"""EarlyStopping: Keras 3's exact decisions, Prechelt's criteria on scripted sequences."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest
import torch
from torch import nn

from reglab import InvalidParameterError
from reglab.training import Callback, EarlyStopping, accuracy, fit


def _first_stop(stopper: EarlyStopping, values, train=None) -> int | None:
    for epoch, value in enumerate(values):
        t = None if train is None else train[epoch]
        if stopper.update(value, epoch, train_value=t):
            return epoch
    return None


@pytest.mark.parametrize(
    ("values", "kwargs", "stop"),
    [
        ([6, 5, 5, 5, 5], dict(patience=2), 3),
        ([6, 5, 5, 5, 5], dict(patience=0), 2),
        ([6, 5.5, 5.2, 5.1], dict(patience=1, min_delta=0.5), 1),  # 5.5 + 0.5 does not beat 6
        ([6, 5, 4, 3, 2], dict(patience=0), None),
        ([0.5, 0.4, 0.39, 0.38, 0.385], dict(patience=1, baseline=0.3), 4),  # never beats baseline
        ([9, 1, 2, 3, 4, 5], dict(patience=1, start_from_epoch=2), 3),  # 1 was warm-up: best is 2
        ([0.5, 0.6, 0.6, 0.6], dict(monitor="val_acc", patience=1), 2),  # auto -> max
    ],
)
def test_scripted_patience(values, kwargs, stop) -> None:
    stopper = EarlyStopping(**kwargs)
    assert _first_stop(stopper, values) == stop
    assert (stopper.reason is None) == (stop is None)


def test_gl_stops_when_generalization_loss_exceeds_alpha() -> None:
    values = [1.0, 0.8, 0.7, 0.75, 0.78]  # GL: 0, 0, 0, 7.1, 11.4
    assert _first_stop(EarlyStopping(criterion="gl", alpha=10), values) == 4
    assert _first_stop(EarlyStopping(criterion="gl", alpha=12), values) is None


def test_pq_uses_training_progress_at_strip_ends() -> None:
    val = [1.0, 0.8, 0.7, 0.77, 0.8, 0.85]
    train = [1.0, 0.9, 0.8, 0.79, 0.785, 0.784]
    # Epoch 3 (end of strip 2): GL = 10, P_2 = 1000 (1.59 / 1.58 - 1) = 6.33, PQ = 1.58.
    # Epoch 5: GL = 21.4, P_2 = 1000 (1.569 / 1.568 - 1) = 0.638, PQ = 33.6.
    assert _first_stop(EarlyStopping(criterion="pq", alpha=0.5, strip_length=2), val, train) == 3
    stopper = EarlyStopping(criterion="pq", alpha=2.0, strip_length=2)
    assert _first_stop(stopper, val, train) == 5
    assert stopper.reason.startswith("PQ = GL / P_2 = 21.4 / 0.638 > alpha = 2.0")


def test_pq_needs_the_training_error() -> None:
    stopper = EarlyStopping(criterion="pq", alpha=1, strip_length=2)
    with pytest.raises(InvalidParameterError, match=r"needs the training error each epoch"):
        _first_stop(stopper, [1.0, 0.9])


def test_up_counts_successive_strips_with_a_rise() -> None:
    val = [
        1.0,
        0.9,
        0.8,
        0.95,
        0.9,
        1.0,
        1.1,
        1.2,
    ]  # strip ends: 0.9, 0.95 (up), 1.0 (up), 1.2 (up)
    assert _first_stop(EarlyStopping(criterion="up", successive_strips=1, strip_length=2), val) == 3
    assert _first_stop(EarlyStopping(criterion="up", successive_strips=2, strip_length=2), val) == 5
    assert _first_stop(EarlyStopping(criterion="up", successive_strips=3, strip_length=2), val) == 7
    reset = [1.0, 0.9, 0.8, 0.95, 0.9, 0.7, 1.1, 1.2]  # the rise at epoch 3 is not followed
    assert (
        _first_stop(EarlyStopping(criterion="up", successive_strips=2, strip_length=2), reset)
        is None
    )


def test_state_dict_resumes_the_same_decisions() -> None:
    values = [1.0, 0.8, 0.7, 0.75, 0.78, 0.8, 0.9, 0.95]
    whole = EarlyStopping(criterion="up", successive_strips=2, strip_length=2)
    expected = [whole.update(v, e) for e, v in enumerate(values)]
    first = EarlyStopping(criterion="up", successive_strips=2, strip_length=2)
    got = [first.update(v, e) for e, v in enumerate(values[:3])]
    second = EarlyStopping(criterion="up", successive_strips=2, strip_length=2)
    second.load_state_dict(first.state_dict())
    got += [second.update(v, e + 3) for e, v in enumerate(values[3:])]
    assert got == expected


def test_errors() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"cannot tell whether 'val_f2x' should be minimised or maximised",
    ):
        EarlyStopping(monitor="val_f2x")
    with pytest.raises(
        InvalidParameterError,
        match=r"'alpha' parameter of EarlyStopping must be a number >= 0 with criterion='gl'\. Got None",
    ):
        EarlyStopping(criterion="gl")
    with pytest.raises(
        InvalidParameterError,
        match=r"'mode' parameter of EarlyStopping must be 'min' \(an error\) with criterion='up'",
    ):
        EarlyStopping(monitor="val_acc", criterion="up", successive_strips=2)
    with pytest.raises(InvalidParameterError, match=r"needs the model"):
        EarlyStopping(restore_best_weights=True).update(1.0, 0)


def _fit_without_val(stopper: EarlyStopping, epochs: int = 2):
    model = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.randint(0, 2, (8,)))
    return fit(
        model,
        data,
        loss=nn.functional.cross_entropy,
        metrics={"acc": accuracy},
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=epochs,
        callbacks=[stopper],
        progress=False,
    )


def test_missing_monitor_warns_and_skips_as_keras_or_raises_when_strict() -> None:
    message = r"monitors 'val_loss', which was not logged\. Available metrics: loss, acc, step_time"
    stopper = EarlyStopping(patience=0)
    with pytest.warns(UserWarning, match=message + r".*Epoch 2 skipped"):
        history = _fit_without_val(stopper, epochs=3)
    assert len(history) == 3
    assert stopper.best is None
    assert history.stop_reason is None
    with pytest.raises(InvalidParameterError, match=message):
        _fit_without_val(EarlyStopping(strict=True))


def test_auto_mode_names() -> None:
    assert EarlyStopping(monitor="val_f1_score").mode == "max"
    assert EarlyStopping(monitor="val_mean_squared_error").mode == "min"


def test_check_finite_and_thresholds_by_hand() -> None:
    nan = float("nan")
    assert _first_stop(EarlyStopping(patience=5), [1.0, 0.9, nan, 0.8]) == 2
    assert _first_stop(EarlyStopping(patience=5, check_finite=False), [1.0, 0.9, nan, 0.8]) is None
    stopper = EarlyStopping(patience=5, start_from_epoch=3)
    assert _first_stop(stopper, [1.0, float("inf"), 0.5]) == 1  # even during warm-up
    assert stopper.reason == "val_loss = inf is not finite; previous best none"
    stopper = EarlyStopping(patience=9, stopping_threshold=0.5)
    assert _first_stop(stopper, [1.0, 0.5, 0.49, 0.3]) == 2  # strictly better than 0.5
    assert stopper.reason == "val_loss = 0.49 < stopping_threshold 0.5"
    assert stopper.best == 0.5  # the threshold's epoch is not recorded as best
    stopper = EarlyStopping("val_acc", patience=9, divergence_threshold=0.2)
    assert _first_stop(stopper, [0.5, 0.2, 0.19]) == 2
    assert stopper.reason == "val_acc = 0.19 < divergence_threshold 0.2"
    with pytest.raises(
        InvalidParameterError,
        match=r"'stopping_threshold' parameter of EarlyStopping must be None or a finite number",
    ):
        EarlyStopping(stopping_threshold=float("nan"))


def test_a_nan_metric_stops_fit() -> None:
    model = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.randint(0, 2, (8,)))
    history = fit(
        model,
        data,
        data,
        loss=nn.functional.cross_entropy,
        metrics={"error": lambda out, y: torch.tensor(float("nan"))},
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=4,
        callbacks=[EarlyStopping("val_error", patience=9)],
        progress=False,
    )
    assert len(history) == 1
    assert history.stop_reason == "val_error = nan is not finite; previous best none"


def test_restore_best_weights_through_fit() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    xv, yv = torch.randn(40, 5), torch.randint(0, 3, (40,))  # pure noise: val loss rises
    model = nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 3))
    snapshots = []

    class Keep(Callback):  # records the weights at the end of every epoch
        def on_epoch_end(self, state) -> None:
            snapshots.append({k: v.clone() for k, v in state.model.state_dict().items()})

    stopper = EarlyStopping(patience=3, restore_best_weights=True)
    history = fit(
        model,
        (x, y),
        (xv, yv),
        loss=nn.functional.cross_entropy,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        epochs=60,
        callbacks=[Keep(), stopper],
        progress=False,
        seed=0,
    )
    assert history.stop_reason == stopper.reason
    assert stopper.stopped_epoch == len(history) - 1
    assert stopper.best_epoch == int(np.argmin(history["val_loss"]))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[stopper.best_epoch][k])


try:
    from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
except ImportError:  # pragma: no cover
    LightningEarlyStopping = None


@pytest.mark.skipif(LightningEarlyStopping is None, reason="lightning not installed")
@pytest.mark.parametrize("seed", range(20))
def test_guards_stop_where_lightning_stops(seed) -> None:
    """Lightning's own decision function, run on random sequences with NaN/inf and thresholds;
    patience never runs out, so only the guards can stop either."""
    rng = np.random.default_rng(seed)
    values = list(np.round(1.0 + np.cumsum(rng.normal(0.0, 0.1, size=40)), 3))
    for i in rng.choice(40, size=int(rng.integers(0, 2)), replace=False):
        values[i] = float(rng.choice([np.nan, np.inf, -np.inf]))
    mode = ("min", "max")[seed % 2]
    kwargs = dict(
        check_finite=bool(seed % 3),
        stopping_threshold=float(np.round(rng.uniform(0.3, 0.8 if mode == "min" else 1.7), 3)),
        divergence_threshold=float(np.round(rng.uniform(1.2, 1.7) if mode == "min" else 0.4, 3)),
    )
    if seed % 4 == 0:
        kwargs["stopping_threshold"] = None
    theirs = LightningEarlyStopping("val_loss", patience=1000, mode=mode, **kwargs)
    ours = EarlyStopping("val_loss", patience=1000, mode=mode, **kwargs)
    expected = next(
        (e for e, v in enumerate(values) if theirs._evaluate_stopping_criteria(torch.tensor(v))[0]),
        None,
    )
    assert _first_stop(ours, values) == expected


keras = None
if os.environ.get("KERAS_BACKEND", "torch") == "torch":
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:  # pragma: no cover
        keras = None


@pytest.mark.skipif(keras is None, reason="keras not installed")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=0),
        dict(patience=3),
        dict(patience=2, min_delta=0.05),
        dict(patience=2, baseline=0.2),
        dict(patience=1, start_from_epoch=4),
        dict(patience=2, mode="max", monitor="val_acc"),
    ],
    ids=str,
)
def test_same_decisions_as_keras(kwargs, seed) -> None:
    rng = np.random.default_rng(seed)
    values = list(np.round(1.0 + np.cumsum(rng.normal(-0.02, 0.08, size=30)), 3))
    kwargs = {"mode": "min", **kwargs}
    monitor = kwargs.pop("monitor", "val_loss")
    theirs = keras.callbacks.EarlyStopping(monitor=monitor, **kwargs)
    stub = types.SimpleNamespace(stop_training=False)
    theirs.set_model(stub)
    theirs.on_train_begin()
    ours = EarlyStopping(monitor=monitor, **kwargs)
    for epoch, value in enumerate(values):
        theirs.on_epoch_end(epoch, {monitor: value})
        assert ours.update(value, epoch) == stub.stop_training, epoch
        assert (ours.best, ours.best_epoch, ours.wait) == (
            theirs.best,
            theirs.best_epoch,
            theirs.wait,
        )
        if stub.stop_training:
            break
