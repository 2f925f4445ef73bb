"""What every kind of trial shares: the grid's regularizers, the training run, weight
statistics and the outcome (the ``[train]`` table is :mod:`reglab.lab.settings.train`)."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import reglab
from reglab.constraints import NormBound
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.techniques import LayerDecayConfig, SamConfig
from reglab.lab.settings.train import (
    SCHEDULED_SLOTS,
    ScheduleConfig,
    ScheduleTarget,
    TrainConfig,
)
from reglab.lab.work.device import to_device
from reglab.layouts import named_kernels, unit_layout
from reglab.optim import SAM
from reglab.training import Callback, Diverged, History, fit

__all__ = [
    "GridRegularizers",
    "TrialContext",
    "TrialOutcome",
    "grid_regularizers",
    "history_rows",
    "kernel_stats",
    "kernels",
    "make_optimizer",
    "optimizer_side",
    "tensor_shapes",
    "train_model",
]


@dataclass
class TrialContext:
    """How a trial runs and reports: ``progress(epoch, epochs)`` after each epoch, TensorBoard
    event files under ``tensorboard`` (``reglab run --tensorboard DIR``), the ``device`` it
    trains on (``reglab run --device``; :mod:`reglab.lab.work.device`), and ``callbacks``
    added to the training loop (a search's pruning reports)."""

    progress: Callable[[int, int], None] | None = None
    tensorboard: str | os.PathLike[str] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    callbacks: tuple[Callback, ...] = ()


@dataclass
class TrialOutcome:
    """Final metrics (floats), per-epoch history, and the trained model."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    model: nn.Module
    reliability: dict[str, list[float]] | None = None  # test-set bins: count, confidence, acc
    extra: dict[str, Any] = field(default_factory=dict)


class EpochProgress(Callback):
    def __init__(self, report: Callable[[int, int], None], epochs: int) -> None:
        self.report, self.epochs = report, epochs

    def on_epoch_end(self, state: Any) -> None:
        self.report(state.epoch + 1, self.epochs)


def make_optimizer(
    model: nn.Module,
    train: TrainConfig,
    make: Callable[..., Any] | None = None,
    *,
    sam: SamConfig | None = None,
    layer_decay: LayerDecayConfig | None = None,
) -> torch.optim.Optimizer:
    """The ``[train]`` optimizer over ``model``'s parameters, with ``weight_decay`` on its
    kernels only (:func:`reglab.param_groups`). ``make(cls, params, **options)`` builds it
    (default: torch's implementation; stacks pass ``fused_optimizer``).

    ``train.optimizer = "sam"``: :class:`reglab.optim.SAM` (``sam``'s settings, its defaults
    when None) around ``sam.base``. ``layer_decay``: one group per layer, each with
    ``lr = train.lr · lr_scale`` (:func:`reglab.param_groups`)."""
    make = make or (lambda cls, params, **options: cls(params, **options))
    wd = train.weight_decay
    kind = train.optimizer
    if kind == "sam":
        sam = sam or SamConfig()
        kind = sam.base
        inner, settings = make, sam

        def make(cls: Any, params: Any, **options: Any) -> Any:
            return inner(
                SAM,
                params,
                base_optimizer=cls,
                rho=settings.rho,
                adaptive=settings.adaptive,
                **options,
            )

    if layer_decay is not None:
        params: Any = reglab.param_groups(model, wd, layer_decay=layer_decay.decay, lr=train.lr)
    else:
        params = reglab.param_groups(model, wd) if wd else model.parameters()
    if kind == "sgd":
        return make(torch.optim.SGD, params, lr=train.lr, momentum=train.momentum)
    if kind == "adamw":  # AdamW's default decay (0.01) must not reach biases
        return make(torch.optim.AdamW, params, lr=train.lr, weight_decay=0.0)
    return make(torch.optim.Adam, params, lr=train.lr)


def kernels(model: nn.Module) -> list[torch.Tensor]:
    """The model's kernels, as :mod:`reglab.layouts` defines them."""
    return [p for _, _, _, p in named_kernels(model)]


class GridRegularizers(list):  # type: ignore[type-arg]
    """The grid point's regularizers (a list, as :func:`reglab.fit` takes them) and
    ``targets``: the object each possible schedule target names (:class:`ScheduleTarget` ->
    the penalty or the ``NormBound``), built together with them."""

    targets: dict[ScheduleTarget, Any]


def grid_regularizers(config: TrialConfig, module: nn.Module) -> GridRegularizers:
    """The grid point's ``rules`` attached to ``module`` and its ``norm_bound`` (over all of
    ``module``'s kernels together)."""
    regularizers = GridRegularizers()
    regularizers.targets = {}
    if config.rules:
        rules = config.build_rules()
        regularizers.append(reglab.attach(module, rules))
        regularizers.targets.update(
            {ScheduleTarget("rule", glob, slot): rule[slot] for glob, rule in rules.items()
             for slot in SCHEDULED_SLOTS if slot in rule}
        )  # fmt: skip
    if config.norm_bound is not None:
        bound = config.norm_bound
        regularizers.append(NormBound(kernels(module), bound.max_norm, lr_dual=bound.lr_dual))
        regularizers.targets[ScheduleTarget("norm_bound")] = regularizers[-1]
    return regularizers


def train_model(
    model: nn.Module,
    train: Any,
    monitor: Any,
    config: TrialConfig,
    seed: int,
    context: TrialContext,
    *,
    regularizers: Sequence[Any] | None = None,
    callbacks: Sequence[Callback] = (),
    optimizer_maker: Callable[..., Any] | None = None,
    **fit_kwargs: Any,
) -> tuple[History, float]:
    """:func:`~reglab.training.fit` with the point's ``[train]`` settings and ``seed``, the
    grid's regularizers (unless given) and the context's progress and TensorBoard callbacks;
    returns the history and the training seconds. Hooks are removed afterwards, so evaluation
    records no activity. Raises :class:`Diverged` when training stopped on a non-finite
    value. ``optimizer_maker`` builds the optimizer (:func:`make_optimizer`'s ``make``).

    Device: the model trains on ``context.device`` in ``[train] precision``; in-memory
    ``train`` and ``monitor`` data are moved there once (when they fit:
    :func:`~reglab.lab.work.device.to_device`), and the model is back on the CPU when this
    returns, so metrics are computed and weights saved as on a CPU run."""
    if regularizers is None:
        regularizers = grid_regularizers(config, model)
    optimizer = make_optimizer(
        model, config.train, optimizer_maker, sam=config.sam, layer_decay=config.layer_decay
    )
    steps = _steps_per_epoch(train, config.train.batch_size)
    handles, schedules = optimizer_side(config, model, optimizer, regularizers, steps)
    callbacks = [*schedules, *callbacks]  # schedules log their values before other loggers
    callbacks += context.callbacks
    if context.progress is not None:
        callbacks.append(EpochProgress(context.progress, config.train.epochs))
    if context.tensorboard is not None:
        from reglab.training import TensorBoard

        callbacks.append(TensorBoard(context.tensorboard))
    device = context.device
    train, monitor = to_device(train, device), to_device(monitor, device)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a divergence is reported as the trial's outcome
        warnings.filterwarnings("ignore", "fit stopped:", RuntimeWarning)
        history = fit(
            model,
            train,
            monitor,
            device=device,
            precision=config.train.precision,
            optimizer=optimizer,
            epochs=config.train.epochs,
            regularization=list(regularizers),
            callbacks=callbacks,
            batch_size=config.train.batch_size,
            seed=seed,
            progress=False,
            **fit_kwargs,
        )
    seconds = time.perf_counter() - start
    model.cpu()  # fit read the device at each epoch's end: the seconds are the device's
    for reg in [*regularizers, *handles]:
        if hasattr(reg, "remove"):
            reg.remove()
    if history.diverged is not None:
        raise Diverged(history.diverged)
    return history, seconds


def _steps_per_epoch(train: Any, batch_size: int) -> int:
    if isinstance(train, (tuple, list)):  # in-memory (x, y), batched by index slicing
        return max(1, math.ceil(len(train[0]) / batch_size))
    return max(1, len(train))


def optimizer_side(
    config: TrialConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    regularizers: Sequence[Any],
    steps_per_epoch: int,
) -> tuple[list[Any], list[Any]]:
    """The point's optimizer hooks: the proximal L1 step (``proximal_l1``) and its
    ``schedules``; returns ``(every handle, the schedule handles)`` (those log their values)."""
    handles: list[Any] = []
    proximal = None
    if config.proximal_l1 or any(s.target == "proximal_l1" for s in config.schedules):
        proximal = reglab.proximal_l1(optimizer, model, config.proximal_l1)
        handles.append(proximal)
    schedules = [
        entry.build(_schedule_target(entry, regularizers, proximal), optimizer,
                    steps_per_epoch)
        for entry in config.schedules
    ]  # fmt: skip
    return [*handles, *schedules], schedules


def _schedule_target(entry: ScheduleConfig, regularizers: Sequence[Any], proximal: Any) -> Any:
    """The object a schedule's target names (the target was checked at parse time)."""
    target = entry.resolved
    if target == ScheduleTarget("proximal_l1"):
        return proximal
    found = getattr(regularizers, "targets", {}).get(target)
    if found is None:
        raise LookupError(f"no object for schedule target {entry.target!r}")
    return found


def tensor_shapes(model: nn.Module) -> dict[str, list[int]]:
    """``{state_dict name: shape}`` of a trained model: stored with the trial's results, so a
    report checks a checkpoint against the model it belongs to without building the model."""
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def history_rows(history: Any) -> list[dict[str, float]]:
    """Per-epoch logs as plain floats, without the per-term penalty columns (kept small: they
    are stored in the Optuna storage)."""
    return [
        {k: float(v) for k, v in epoch.items() if not k.startswith("penalty/")}
        for epoch in history.epochs
    ]


def kernel_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm of all kernels together, the largest norm of one output unit's incoming
    weights (what MaxNorm bounds; units as :mod:`reglab.layouts` lays them out), the shares
    of kernel entries with |w| < 1e-3 and exactly 0, and the number of trainable parameters
    (``param_count``): statistics of the weights, measured on no data."""
    with torch.no_grad():
        found = list(named_kernels(model))
        weights = [p for *_, p in found]
        count = sum(p.numel() for p in weights)
        unit_norms = [
            float(unit_layout(module, attr).to_units(p).flatten(1).norm(dim=1).max())
            for _, module, attr, p in found
        ]
        return {
            "weight_norm": math.sqrt(sum(float(p.square().sum()) for p in weights)),
            "max_unit_norm": max(unit_norms),
            "weight_small_frac": sum(int((p.abs() < 1e-3).sum()) for p in weights) / count,
            "weight_zero_frac": sum(int((p == 0).sum()) for p in weights) / count,
            "param_count": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        }
