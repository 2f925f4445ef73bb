"""Train one grid point with one seed and measure what happened."""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab.data import digits, fashion_mnist, mnist
from reglab.lab.models import mlp
from reglab.losses import (
    LabelSmoothingCrossEntropy,
    expected_calibration_error,
    reliability_diagram,
)
from reglab.stochastic import GaussianNoise, RandomAffine
from reglab.training import Callback, EarlyStopping, accuracy, fit

__all__ = ["TrialOutcome", "load_data", "run_trial"]

Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28)}


@dataclass
class TrialOutcome:
    """Final metrics (floats), per-epoch history, and the trained model."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    model: nn.Module
    reliability: dict[str, list[float]] | None = None  # test-set bins: count, confidence, acc


@lru_cache(maxsize=4)
def _dataset(name: str) -> Split:
    return {"digits": digits, "mnist": mnist, "fashion-mnist": fashion_mnist}[name]()


def load_data(data: dict[str, Any]) -> tuple[Split, tuple[torch.Tensor, torch.Tensor] | None]:
    """``((train, test), validation)`` for a study's ``[data]`` settings.

    ``subset`` keeps a seeded random subset of the training rows (the same for every trial);
    ``validation`` holds out that fraction of the training rows; ``standardize`` centres and
    scales every feature with statistics of the (remaining) training rows.
    """
    (x, y), (xt, yt) = _dataset(data["name"])
    generator = torch.Generator().manual_seed(12345)
    if data["subset"]:
        rows = torch.randperm(len(x), generator=generator)[: int(data["subset"])]
        x, y = x[rows], y[rows]
    val = None
    if data["validation"] > 0:
        n_val = max(1, round(len(x) * float(data["validation"])))
        rows = torch.randperm(len(x), generator=generator)
        val = (x[rows[:n_val]], y[rows[:n_val]])
        x, y = x[rows[n_val:]], y[rows[n_val:]]
    if data["standardize"]:
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        x, xt = (x - mean) / std, (xt - mean) / std
        val = None if val is None else ((val[0] - mean) / std, val[1])
    return ((x, y), (xt, yt)), val


def build_model(model_cfg: dict[str, Any]) -> nn.Module:
    """The study's model: ``kind = "mlp"`` (reglab's :func:`~reglab.lab.mlp`) or
    ``kind = "factory"`` with ``factory = "package.module:function"`` (imported, then called
    with the ``options`` table as keyword arguments)."""
    if model_cfg["kind"] == "factory":
        module_name, _, attr = model_cfg["factory"].partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(**model_cfg.get("options", {}))
    return mlp(
        list(model_cfg["sizes"]),
        model_cfg["activation"],
        float(model_cfg["dropout"]),
        float(model_cfg["input_dropout"]),
    )


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    codes: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: codes.append(o))
        for name, m in model.named_modules()
        if name.startswith("act")
    ]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    probs = logits.softmax(-1)
    zeros = sum(int((c == 0).sum()) for c in codes)
    total = sum(c.numel() for c in codes)
    bins = reliability_diagram(probs, y, n_bins=15)
    return {
        "reliability": {
            "count": bins.count.tolist(),
            "confidence": bins.confidence.tolist(),
            "accuracy": bins.accuracy.tolist(),
        },
        "acc": accuracy(logits, y).item(),
        "loss": F.cross_entropy(logits, y).item(),
        "ece": expected_calibration_error(probs, y),
        "zero_frac": zeros / total if total else 0.0,
        "mean_activation": (sum(float(c.sum()) for c in codes) / total) if total else 0.0,
    }


def run_trial(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None = None
) -> TrialOutcome:
    """Train the model described by a resolved grid-point ``config`` with ``seed``.

    Deterministic on CPU for a given config and seed (initialisation, batch order, dropout and
    noise all derive from ``seed``). ``epoch_callback(epoch, epochs)`` reports progress.
    """
    (train, test), val = load_data(config["data"])
    model_cfg, train_cfg = config["model"], config["train"]
    torch.manual_seed(seed)
    model = build_model(model_cfg)
    if train_cfg["optimizer"] == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=float(train_cfg["lr"]), momentum=float(train_cfg["momentum"])
        )
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=float(train_cfg["lr"]))
    reg = reglab.attach(model, config["rules"]) if config.get("rules") else None
    eps = float(config.get("label_smoothing", 0.0))
    loss = LabelSmoothingCrossEntropy(eps) if eps > 0 else F.cross_entropy
    transforms: list[nn.Module] = []
    if config.get("augment"):
        aug = config["augment"]
        transforms.append(
            RandomAffine(
                float(aug.get("degrees", 10.0)),
                float(aug.get("translate", 0.1)),
                tuple(aug.get("scale", (0.9, 1.1))),
                image_shape=_IMAGE_SHAPES[config["data"]["name"]],
            )
        )
    if config.get("input_noise"):
        transforms.append(GaussianNoise(float(config["input_noise"])))
    transform = nn.Sequential(*transforms) if transforms else None
    callbacks: list[Callback] = []
    stopper = None
    if config.get("early_stopping"):
        stopper = EarlyStopping(**config["early_stopping"])
        callbacks.append(stopper)
    if epoch_callback is not None:

        class _Progress(Callback):
            def on_epoch_end(self, state: Any) -> None:
                epoch_callback(state.epoch + 1, int(train_cfg["epochs"]))

        callbacks.append(_Progress())
    monitor = val if val is not None else test  # curves; test is never used to decide anything
    start = time.perf_counter()
    history = fit(
        model,
        train,
        monitor,
        loss=loss,
        optimizer=optimizer,
        epochs=int(train_cfg["epochs"]),
        regularization=reg,
        callbacks=callbacks,
        batch_size=int(train_cfg["batch_size"]),
        seed=seed,
        progress=False,
        metrics={"acc": accuracy},
        transform=transform,
    )
    seconds = time.perf_counter() - start
    if reg is not None:
        reg.remove()
    on_train, on_test = _evaluate(model, *train), _evaluate(model, *test)
    with torch.no_grad():
        kernels = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim >= 2]
        weight_norm = math.sqrt(sum(float(p.square().sum()) for p in kernels))
        weight_zero = sum(int((p.abs() < 1e-3).sum()) for p in kernels) / sum(
            p.numel() for p in kernels
        )
    reliability = on_test.pop("reliability")
    on_train.pop("reliability")
    metrics = {
        "train_acc": on_train["acc"],
        "test_acc": on_test["acc"],
        "gap": on_train["acc"] - on_test["acc"],
        "train_loss": on_train["loss"],
        "test_loss": on_test["loss"],
        "test_ece": on_test["ece"],
        "zero_frac": on_test["zero_frac"],
        "mean_activation": on_test["mean_activation"],
        "weight_norm": weight_norm,
        "weight_small_frac": weight_zero,
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    if stopper is not None:
        metrics["best_epoch"] = float(stopper.best_epoch)
    rows = [
        {k: float(v) for k, v in epoch.items() if not k.startswith("penalty/")}
        for epoch in history.epochs
    ]
    return TrialOutcome(metrics, rows, model, reliability)
