"""``fit``: a short, linear training loop with regularization, callbacks and progress."""

from __future__ import annotations

import contextlib
import importlib.util
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from reglab._validation import InvalidParameterError, check_positive_int, invalid
from reglab.training.callbacks import Callback, TrainState
from reglab.training.divergence import FiniteWatch, Snapshot, all_finite
from reglab.training.history import History
from reglab.training.precision import Precision

__all__ = ["Regularizer", "fit"]

Batch = tuple[Any, Any]
LossFn = Callable[[Any, Any], torch.Tensor]


@runtime_checkable
class Regularizer(Protocol):
    """Anything ``fit`` can add to the loss: ``reglab.Regularization``,
    ``reglab.constraints.NormBound``, or your own object with ``penalty()``. An optional
    ``after_step()`` runs after every optimizer step (projections, dual updates) and an optional
    ``terms()`` is logged."""

    def penalty(self) -> torch.Tensor: ...


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _length(y: Any) -> int:
    return len(next(iter(y.values()))) if isinstance(y, Mapping) else len(y)


def _index(y: Any, idx: torch.Tensor) -> Any:
    return {k: v[idx] for k, v in y.items()} if isinstance(y, Mapping) else y[idx]


def _batches(
    data: Any, batch_size: int, shuffle: bool, generator: torch.Generator | None, name: str
) -> Iterator[Batch]:
    """In-memory ``(x, y)`` tensors are batched by index slicing; anything else is iterated
    (a DataLoader yielding ``(x, y)``)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        n = len(x)
        if _length(y) != n:
            raise invalid(
                name,
                "fit",
                "(x, y) with as many targets as inputs",
                f"{n} inputs, {_length(y)} targets",
            )
        if n == 0:  # one empty batch: a loss of nan, reported as a divergence
            raise invalid(name, "fit", "(x, y) with at least one sample", "0 inputs")
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for idx in order.split(batch_size):
            yield x[idx], _index(y, idx)
        return
    if not isinstance(data, Iterable):
        raise invalid(name, "fit", "a DataLoader or an (x, y) pair of tensors", type(data).__name__)
    for x, y in data:
        if isinstance(x, torch.Tensor) and x.ndim > 0 and x.shape[0] == 0:
            raise InvalidParameterError(
                f"The {name!r} data of fit yielded an empty batch (inputs of shape "
                f"{tuple(x.shape)}); every batch needs at least one sample."
            )
        yield x, y


def _loss(
    loss: LossFn | Mapping[str, LossFn],
    weights: Mapping[str, float] | None,
    output: Any,
    y: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total data loss and, for per-task losses, each task's term."""
    if not isinstance(loss, Mapping):
        return loss(output, y), {}
    parts = {task: fn(output[task], y[task]) for task, fn in loss.items()}
    weights = weights or {}
    total = sum(
        (weights.get(task, 1.0) * value for task, value in parts.items()),
        start=torch.zeros((), device=next(iter(parts.values())).device),
    )
    return total, parts


class _Means:
    """Running means of logged scalars, weighted by batch size (no device syncs until read).

    Updated as ``mean += (value - mean) · n / count`` rather than as a sum of ``value · n``:
    a finite value near the dtype's largest (a penalty of 3.37e37 in float32) stays finite in
    the mean, where the sum overflowed to inf. Half precision is read as float32, float64 kept.
    """

    def __init__(self) -> None:
        self.means: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, value: torch.Tensor, n: int) -> None:
        value = value.detach()
        value = value.to(torch.promote_types(value.dtype, torch.float32))
        count = self.counts[key] = self.counts.get(key, 0) + n
        mean = self.means.get(key)
        self.means[key] = value if mean is None else mean + (value - mean) * (n / count)

    def result(self, prefix: str = "") -> dict[str, Any]:
        # A scalar's mean is a float; a vector-valued metric's (one value per member of a
        # model stack) a list of floats.
        return {prefix + k: float(v) if v.ndim == 0 else v.tolist() for k, v in self.means.items()}


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    data: Any,
    loss: Any,
    loss_weights: Any,
    metrics: Mapping[str, LossFn],
    batch_size: int,
    device: torch.device,
    precision: Precision | None = None,
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    means = _Means()
    try:
        for x, y in _batches(data, batch_size, False, None, "val"):
            x, y = _to(x, device), _to(y, device)
            with precision.autocast() if precision is not None else contextlib.nullcontext():
                output = model(x)
                value, parts = _loss(loss, loss_weights, output, y)
            n = len(x)
            means.add("loss", value, n)
            for task, part in parts.items():
                means.add(f"loss/{task}", part, n)
            for name, fn in metrics.items():
                means.add(name, torch.as_tensor(fn(output, y)), n)
    finally:
        model.train(was_training)
    return means.result("val_")


class _NoBar(contextlib.nullcontext):  # type: ignore[type-arg]
    def add_task(self, *_: Any, **__: Any) -> int:
        return 0

    def update(self, *_: Any, **__: Any) -> None:
        pass


def _progress_bar(enabled: bool) -> Any:
    """rich's progress bar when asked for and installed (the ``lab`` extra), else nothing."""
    if not enabled or importlib.util.find_spec("rich") is None:
        return _NoBar()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def _penalty(regularizer: Any) -> torch.Tensor:
    value = regularizer.penalty()
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.as_tensor(float(value))
    shape = (
        f"a tensor of shape {tuple(value.shape)}"
        if isinstance(value, torch.Tensor)
        else (type(value).__name__)
    )
    raise InvalidParameterError(
        f"{type(regularizer).__name__}.penalty() must return a 0-dim tensor (a scalar to add "
        f"to the loss). Got {shape}."
    )


def _stop_diverged(
    history: History, model: nn.Module, snapshot: Snapshot, reason: str, watch: FiniteWatch
) -> None:
    """End training at a divergence with the last finite weights: the current ones when the
    check ran before the bad step's update (CPU) and they are finite, else the epoch's start."""
    if watch.lazy or not all_finite(model):
        snapshot.restore()
        kept = "restored the weights of the epoch's start"
    else:
        kept = "kept the weights before that step"
    history.diverged = reason
    history.stop_reason = f"diverged: {reason}"
    warnings.warn(f"fit stopped: {reason}; {kept}", RuntimeWarning, stacklevel=3)


def _closure(
    model: nn.Module, loss: Any, weights: Any, x: Any, y: Any, regs: list, precision: Precision
) -> Any:
    """The step's total loss again, backward included: the closure for optimizers that set
    ``requires_closure`` and evaluate it at other weights (``reglab.optim.SAM``)."""

    def closure() -> torch.Tensor:
        with precision.autocast():
            total = _loss(loss, weights, model(x), y)[0]
            for r in regs:
                total = total + _penalty(r)
        total.backward()
        return total

    return closure


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    loss: LossFn | Mapping[str, LossFn],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    regularization: Regularizer | Sequence[Regularizer] | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "cpu",
    progress: bool = True,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    metrics: Mapping[str, LossFn] | None = None,
    loss_weights: Mapping[str, float] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_transform: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]] | None = None,
    precision: str = "32",
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its ``History``.

    Each step: ``output = model(transform(x))``; ``loss(output, y)`` plus every
    ``regularization.penalty()``; backward; ``optimizer.step()`` (``step(closure)``, the
    closure recomputing all of that, for optimizers with ``requires_closure`` such as
    ``reglab.optim.SAM``); then each regularizer's
    ``after_step()`` (constraint projections, NormBound's dual update) and the callbacks'
    ``on_batch_end``. After each epoch, ``val`` is evaluated in eval mode without gradients.

    Args:
        model: the module; moved to ``device``.
        train: a DataLoader yielding ``(x, y)``, or an in-memory ``(x, y)`` pair of tensors
            (batched by index slicing — no per-sample collation — shuffled each epoch with
            ``seed``). ``y`` may be a dict of per-task targets.
        val: held-out data in the same forms (optional).
        loss: ``loss(output, y) -> scalar``, or a dict of per-task losses applied to
            ``output[task]`` and ``y[task]`` and summed with ``loss_weights`` (default 1 each).
        optimizer: a torch optimizer over ``model``'s parameters.
        epochs: number of epochs (>= 1).
        regularization: one or several objects with ``penalty()`` (see ``Regularizer``).
        callbacks: ``Callback`` instances, e.g. ``EarlyStopping``.
        device: where to train.
        progress: show a progress bar with the latest metrics (with rich installed, e.g. by
            the ``lab`` extra; without it, nothing is shown).
        batch_size: rows per step for in-memory data.
        shuffle: reshuffle in-memory data each epoch.
        seed: seeds the shuffling (not the model's initialisation).
        metrics: ``{name: fn(output, y)}`` averaged over rows, logged as ``name`` and
            ``val_name``.
        loss_weights: per-task weights for a dict ``loss``.
        transform: applied to each training input batch only (augmentation, input noise).
        batch_transform: ``(x, y) -> (x, targets)`` on each training batch after
            ``transform`` (mixup, CutMix: targets become class probabilities, which
            ``F.cross_entropy`` and ``accuracy`` accept).
        precision: ``"32"`` (float32), ``"bf16"`` or ``"fp16"``: the forward pass, loss and
            penalties (training and ``val``) under ``torch.autocast`` in that dtype; ``fp16``
            scales the loss with ``torch.amp.GradScaler`` and needs a CUDA or MPS device
            (:mod:`reglab.training.precision`).

    Logs per epoch: ``loss`` (mean data loss over the epoch's training batches, without
    penalties), ``loss/<task>``, metrics, ``penalty`` (mean total penalty) and ``penalty/<term>``
    from each regularizer's ``terms()``, ``val_*``, ``step_time`` (mean seconds per step),
    ``epoch_time``, ``epoch``.

    Divergence: the data loss, every penalty term and the total penalty are checked for inf
    and NaN at every step (on CPU before the step updates any weight; on accelerators on the
    device, read every 64 steps and at each epoch's end, so no step waits for a sync), and
    the parameters after each epoch. At the first non-finite value training stops with the
    last finite weights (the ones before the bad step, or else those of the epoch's start;
    ``EarlyStopping(restore_best_weights=True)`` then restores its best), warns, and sets
    ``history.diverged`` to e.g. ``"penalty/fc1.kernel is inf at step 1234 (epoch 3)"``.

    >>> from torch import nn
    >>> model = nn.Linear(3, 2)
    >>> x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> history = fit(model, (x, y), loss=nn.functional.cross_entropy,
    ...               optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
    ...               progress=False)
    >>> len(history), "loss" in history.keys()
    (2, True)
    """
    epochs = check_positive_int(epochs, "epochs", "fit")
    batch_size = check_positive_int(batch_size, "batch_size", "fit")
    regularizers: list[Any] = (
        []
        if regularization is None
        else list(regularization)
        if isinstance(regularization, Sequence)
        else [regularization]
    )
    for r in regularizers:
        if not isinstance(r, Regularizer):
            raise InvalidParameterError(
                "The 'regularization' parameter of fit must be objects with a penalty() method "
                f"(e.g. reglab.attach(...)). Got {type(r).__name__}."
            )
    metrics = dict(metrics or {})
    device = torch.device(device)
    amp = Precision(precision, device)
    if amp.scaler is not None and getattr(optimizer, "requires_closure", False):
        raise InvalidParameterError(
            f"The 'precision' parameter of fit is 'fp16', which cannot be used with "
            f"{type(optimizer).__name__} (it evaluates a closure, which GradScaler does not "
            "support); use 'bf16' or '32'."
        )
    model.to(device)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    history = History()
    state = TrainState(
        model=model, optimizer=optimizer, history=history, regularizers=list(regularizers)
    )

    def call(hook: str) -> None:
        for cb in callbacks:
            getattr(cb, hook)(state)

    watch = FiniteWatch(device)
    snapshot = Snapshot(model)
    bar = _progress_bar(progress)
    with bar:
        task = bar.add_task("epoch", total=epochs)
        call("on_train_begin")
        for epoch in range(epochs):
            state.epoch = epoch
            call("on_epoch_begin")
            model.train()
            snapshot.take()
            diverged: str | None = None
            means, step_times = _Means(), []
            epoch_start = time.perf_counter()
            for x, y in _batches(train, batch_size, shuffle, generator, "train"):
                step_start = time.perf_counter()
                x, y = _to(x, device), _to(y, device)
                if transform is not None:
                    x = transform(x)
                if batch_transform is not None:
                    x, y = batch_transform(x, y)
                with amp.autocast():
                    output = model(x)
                    data_loss, parts = _loss(loss, loss_weights, output, y)
                if not isinstance(data_loss, torch.Tensor) or data_loss.ndim != 0:
                    got = (
                        f"a tensor of shape {tuple(data_loss.shape)}"
                        if isinstance(data_loss, torch.Tensor)
                        else type(data_loss).__name__
                    )
                    raise InvalidParameterError(
                        "The 'loss' parameter of fit must return a 0-dim tensor (e.g. the "
                        f"batch mean). Got {got}."
                    )
                total = data_loss
                n = len(x)
                step_logs: dict[str, torch.Tensor] = {"loss": data_loss.detach()}
                if regularizers:
                    with amp.autocast():
                        penalties = [_penalty(r) for r in regularizers]
                    penalty = penalties[0] if len(penalties) == 1 else sum(penalties)
                    total = data_loss + penalty
                    for r in regularizers:
                        for term, value in getattr(r, "terms", dict)().items():
                            step_logs[f"penalty/{term}"] = value
                    # The total last: a divergence is named by its term when there is one.
                    step_logs["penalty"] = penalty.detach()
                found = watch.add(state.step + 1, step_logs)
                if found is not None:
                    diverged = found
                    break
                for key, value in step_logs.items():
                    if key != "loss":
                        means.add(key, value, n)
                optimizer.zero_grad(set_to_none=True)
                if getattr(optimizer, "requires_closure", False):  # SAM: a second pass
                    total.backward()
                    optimizer.step(_closure(model, loss, loss_weights, x, y, regularizers, amp))
                else:
                    amp.step(total, optimizer)
                for r in regularizers:
                    if hasattr(r, "after_step"):
                        r.after_step()
                means.add("loss", data_loss, n)
                for name, part in parts.items():
                    means.add(f"loss/{name}", part, n)
                for name, fn in metrics.items():
                    means.add(
                        name,
                        torch.as_tensor(
                            fn(output.detach() if isinstance(output, torch.Tensor) else output, y)
                        ),
                        n,
                    )
                state.step += 1
                state.batch_logs = step_logs
                step_times.append(time.perf_counter() - step_start)
                call("on_batch_end")
            diverged = diverged or watch.flush()
            if diverged is None and not all_finite(model):
                diverged = "a parameter is non-finite after the epoch's last step"
            if diverged is not None:
                _stop_diverged(history, model, snapshot, f"{diverged} (epoch {epoch + 1})", watch)
                break
            logs = means.result()
            if not step_times:
                raise InvalidParameterError("The 'train' data of fit yielded no batch.")
            if val is not None:
                logs.update(
                    _evaluate(model, val, loss, loss_weights, metrics, batch_size, device, amp)
                )
            logs["step_time"] = sum(step_times) / len(step_times)
            logs["epoch_time"] = time.perf_counter() - epoch_start
            logs["epoch"] = float(epoch)
            state.logs = logs
            call("on_epoch_end")
            history.epochs.append(logs)
            shown = ", ".join(f"{k} {logs[k]:.4g}" for k in ("loss", "val_loss") if k in logs)
            bar.update(task, advance=1, description=f"epoch {epoch + 1}/{epochs} {shown}")
            if state.stop:
                history.stop_reason = state.stop_reason
                break
        call("on_train_end")
    return history
