"""Train one grid point with one seed and measure what happened."""

from __future__ import annotations

import importlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab._validation import InvalidParameterError
from reglab.autoencoders import (
    Autoencoder,
    LinearAutoencoder,
    SparseAutoencoder,
    corrupt,
    dictionary_metrics,
    pretrain_layerwise,
    principal_angles,
)
from reglab.constraints import NormBound
from reglab.data import digits, fashion_mnist, image_patches, mnist, teacher_student
from reglab.ensembles import Bagging, error_decomposition
from reglab.lab.language import (
    LSTMLanguageModel,
    corpus_windows,
    language_model_metrics,
    sequence_loss,
)
from reglab.lab.models import mlp
from reglab.lab.posthoc import post_hoc_stopping
from reglab.lab.regression import ridge_metrics
from reglab.losses import (
    LabelSmoothingCrossEntropy,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from reglab.sharing import MultiTask, SemiSupervised
from reglab.stochastic import GaussianNoise, RandomAffine, WeightNoise
from reglab.training import Callback, EarlyStopping, accuracy, fit

__all__ = ["TrialOutcome", "load_data", "run_trial"]

Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_IMAGE_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "patches": (1, 8, 8),
}


@dataclass
class TrialOutcome:
    """Final metrics (floats), per-epoch history, and the trained model."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    model: nn.Module
    reliability: dict[str, list[float]] | None = None  # test-set bins: count, confidence, acc


@lru_cache(maxsize=4)
def _patches() -> Split:
    """20,000 ZCA-whitened 8x8 natural-image patches, 16,000 / 4,000 (labels are all 0)."""
    x = image_patches(size=8, n=20000, seed=0, normalize="zca")
    y = torch.zeros(len(x), dtype=torch.long)
    return (x[:16000], y[:16000]), (x[16000:], y[16000:])


def _dataset(name: str) -> Split:
    loaders = {
        "digits": digits,
        "mnist": mnist,
        "fashion-mnist": fashion_mnist,
        "patches": _patches,
    }
    return loaders[name]()


def load_data(
    data: dict[str, Any], seed: int = 0
) -> tuple[Split, tuple[torch.Tensor, torch.Tensor] | None]:
    """``((train, test), validation)`` for a study's ``[data]`` settings.

    ``subset`` keeps a seeded random subset of the training rows (the same for every trial);
    ``validation`` holds out that fraction of the training rows; ``standardize`` centres and
    scales every feature with statistics of the (remaining) training rows; ``labels = n``
    keeps the labels of ``n`` random training rows and sets the others to ``-1``
    (scikit-learn's "unlabelled"). The ``teacher`` regression problem is the one exception to
    "the same data for every trial": each ``seed`` draws a fresh teacher and sample, so seeds
    average over problem instances as Krogh & Hertz do.
    """
    if data["name"] == "teacher":
        return teacher_student(
            int(data["subset"]) or 90, int(data["inputs"]), float(data["noise"]), seed=seed
        ), None
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
    if data["labels"]:
        unlabelled = torch.randperm(len(x), generator=generator)[int(data["labels"]) :]
        y = y.clone()
        y[unlabelled] = -1
    return ((x, y), (xt, yt)), val


def image_shape(study: Any) -> tuple[int, int] | None:
    """(h, w) of one input image of the study's dataset (for filter pictures); None when its
    inputs are not images (teacher, gutenberg)."""
    shape = _IMAGE_SHAPES.get(study.data["name"])
    return None if shape is None else shape[1:]


def build_model(model_cfg: dict[str, Any]) -> nn.Module:
    """The study's model: ``kind = "mlp"`` (reglab's :func:`~reglab.lab.mlp`) or
    ``kind = "factory"`` with ``factory = "package.module:function"`` (imported, then called
    with the ``options`` table as keyword arguments)."""
    if model_cfg["kind"] == "factory":
        module_name, _, attr = model_cfg["factory"].partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise InvalidParameterError(
                f"model.factory: cannot import {model_cfg['factory']!r} ({err}); expected "
                "'package.module:function' importable from here"
            ) from None
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
    Three kinds of trial: a classifier (default), an autoencoder (``model.kind =
    "autoencoder"``), or a bagged ensemble of classifiers (a grid ``ensemble`` table).
    """
    if config.get("ensemble"):
        return _run_bagging(config, seed)
    if config["model"]["kind"] == "autoencoder":
        return _run_autoencoder(config, seed, epoch_callback)
    if config["model"]["kind"] == "linear":
        return _run_regression(config, seed, epoch_callback)
    if config["model"]["kind"] == "lstm-lm":
        return _run_language_model(config, seed, epoch_callback)

    return _run_classifier(config, seed, epoch_callback)


def _run_classifier(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None
) -> TrialOutcome:
    """A classifier, optionally pre-trained layer-wise, shared with a decoder
    (semi-supervised) or with a parity head (multi-task)."""
    (train, test), val = load_data(config["data"])
    model_cfg, train_cfg = config["model"], config["train"]
    torch.manual_seed(seed)
    net = build_model(model_cfg)
    if config.get("pretrain"):  # on every training row, labelled or not
        pre = config["pretrain"]
        pretrain_layerwise(
            net,
            train[0],
            kind=pre.get("kind", "denoising"),
            epochs=int(pre.get("epochs", 10)),
            level=float(pre.get("level", 0.25)),
            lr=float(train_cfg["lr"]),
            batch_size=int(train_cfg["batch_size"]),
            seed=seed,
        )
    if config.get("weight_noise"):
        for name, module in list(net.named_children()):
            if isinstance(module, nn.Linear):
                setattr(net, name, WeightNoise(module, "weight", float(config["weight_noise"])))
    regularizers: list[Any] = []
    if config.get("rules"):
        regularizers.append(reglab.attach(net, config["rules"]))
    if config.get("norm_bound"):
        bound = config["norm_bound"]
        regularizers.append(
            NormBound(
                [p for n, p in net.named_parameters() if n.endswith("weight")],
                float(bound["max_norm"]),
                lr_dual=float(bound.get("lr_dual", 0.1)),
            )
        )
    smoothing = config.get("label_smoothing") or {}
    eps = float(smoothing.get("eps", 0.0))
    ce: Callable[..., torch.Tensor] = (
        LabelSmoothingCrossEntropy(eps, smoothing.get("form", "uniform"))
        if eps > 0
        else F.cross_entropy
    )
    model, fit_train, fit_monitor, loss, weights, acc = _task_setup(
        config, net, ce, train, val, test
    )
    callbacks: list[Callback] = []
    stopper = None
    if config.get("early_stopping"):
        stopper = EarlyStopping(**config["early_stopping"])
        callbacks.append(stopper)
    if config.get("post_hoc_stopping"):
        callbacks.append(_TestCurve(net, test))
    if epoch_callback is not None:
        callbacks.append(_Progress(epoch_callback, int(train_cfg["epochs"])))
    start = time.perf_counter()
    history = fit(
        model,
        fit_train,
        fit_monitor,
        loss=loss,
        loss_weights=weights,
        optimizer=_optimizer(model, train_cfg),
        epochs=int(train_cfg["epochs"]),
        regularization=regularizers,
        callbacks=callbacks,
        batch_size=int(train_cfg["batch_size"]),
        seed=seed,
        progress=False,
        metrics={"acc": acc},
        transform=_transform(config),
    )
    seconds = time.perf_counter() - start
    for reg in regularizers:
        if hasattr(reg, "remove"):
            reg.remove()
    labelled = train[1] >= 0
    on_train = _evaluate(net, train[0][labelled], train[1][labelled])
    on_test = _evaluate(net, *test)
    reliability = on_test.pop("reliability")
    metrics = {
        "train_acc": on_train["acc"],
        "test_acc": on_test["acc"],
        "gap": on_train["acc"] - on_test["acc"],
        "train_loss": on_train["loss"],
        "test_loss": on_test["loss"],
        "test_ece": on_test["ece"],
        "zero_frac": on_test["zero_frac"],
        "mean_activation": on_test["mean_activation"],
        **_kernel_stats(net),
        **_dropout_inference(net, *test, seed),
        **(_temperature_scaled(net, val, test) if val is not None else {}),
        **_shared_task_metrics(model, test),
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    if stopper is not None:
        metrics["best_epoch"] = float(stopper.best_epoch)
    rows = _history_rows(history)
    if config.get("post_hoc_stopping"):
        metrics.update(post_hoc_stopping(rows, config["post_hoc_stopping"]))
    return TrialOutcome(metrics, rows, net, reliability)


def _task_setup(
    config: dict[str, Any],
    net: nn.Sequential,
    ce: Callable[..., torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    test: tuple[torch.Tensor, torch.Tensor],
) -> tuple[nn.Module, Any, Any, Any, dict[str, float] | None, Callable[..., torch.Tensor]]:
    """(model, train data, monitor data, loss, loss weights, accuracy) for ``fit``.

    The classifier ``net`` is ``trunk = net[:-1]`` then ``head = net[-1]``; the wrappers share
    those modules, so training the wrapper trains ``net``. Only labelled rows (``y >= 0``) are
    used, except by the semi-supervised model, which reconstructs every row."""
    monitor = val if val is not None else test  # curves; test is never used to decide anything
    trunk, head = net[:-1], net[-1]
    hidden, d_in = _in_out(net)
    labelled = train[1] >= 0
    x, y = train[0][labelled], train[1][labelled]
    if config.get("semi_supervised"):
        recon = float(config["semi_supervised"].get("recon_weight", 1.0))
        semi = SemiSupervised(trunk, nn.Linear(hidden, d_in), head, recon)
        return semi, train, monitor, semi.loss, None, lambda out, t: accuracy(out.logits, t)
    if config.get("multitask"):
        weight = float(config["multitask"].get("parity_weight", 1.0))
        multi = MultiTask(trunk, {"digit": head, "parity": nn.Linear(hidden, 2)})

        def tasks(data: tuple[torch.Tensor, torch.Tensor]) -> Any:
            return data[0], {"digit": data[1], "parity": data[1] % 2}

        return (
            multi,
            tasks((x, y)),
            tasks(monitor),
            {"digit": ce, "parity": F.cross_entropy},
            {"digit": 1.0, "parity": weight},
            lambda out, t: accuracy(out["digit"], t["digit"]),
        )
    return net, (x, y), monitor, ce, None, accuracy


def _in_out(net: nn.Sequential) -> tuple[int, int]:
    """(width of the last hidden layer, input dimension) of an MLP."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1].in_features, linears[0].in_features


def _transform(config: dict[str, Any]) -> nn.Module | None:
    """Input augmentation and noise, applied to training batches only."""
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
    return nn.Sequential(*transforms) if transforms else None


class _TestCurve(Callback):
    """Logs ``test_acc`` and ``test_loss`` every epoch, for post-hoc stopping analyses only
    (no decision during training reads them)."""

    def __init__(self, net: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.net, self.test = net, test

    def on_epoch_end(self, state: Any) -> None:
        was_training = self.net.training
        on_test = _evaluate(self.net, *self.test)
        self.net.train(was_training)
        state.logs["test_acc"], state.logs["test_loss"] = on_test["acc"], on_test["loss"]


@torch.no_grad()
def _shared_task_metrics(
    model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """What the second task of a shared model learned, on the test rows: the semi-supervised
    decoder's reconstruction error (``test_recon``, squared error summed over features, with
    ``input_var``, that of predicting the mean, for scale) or the parity head's accuracy."""
    model.eval()
    if isinstance(model, SemiSupervised):
        out = model(test[0])
        return {
            "test_recon": float((out.reconstruction - test[0]).square().sum(1).mean()),
            "input_var": float(test[0].var(0, unbiased=False).sum()),
        }
    if isinstance(model, MultiTask) and "parity" in model.heads:
        parity = model(test[0])["parity"].argmax(-1)
        return {"parity_acc": float((parity == test[1] % 2).double().mean())}
    return {}


@torch.no_grad()
def _dropout_inference(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, passes: int = 20
) -> dict[str, float]:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): test accuracy and NLL of the mean softmax
    over ``passes`` stochastic forward passes, to compare with weight scaling (the eval-mode
    network). Empty for a network without dropout."""
    if not any(isinstance(m, nn.Dropout) for m in net.modules()):
        return {}
    net.train()
    torch.manual_seed(seed + 1)
    probs = torch.stack([net(x).softmax(-1) for _ in range(passes)]).mean(0)
    net.eval()
    return {
        "test_acc_mc": (probs.argmax(-1) == y).double().mean().item(),
        "test_loss_mc": F.nll_loss(probs.clamp_min(1e-12).log(), y).item(),
    }


@torch.no_grad()
def _temperature_scaled(
    net: nn.Module, val: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """Temperature scaling fit on the validation rows; the test ECE after it (Guo et al. 2017)."""
    net.eval()
    labelled = val[1] >= 0
    temperature = fit_temperature(net(val[0][labelled]), val[1][labelled])
    probs = (net(test[0]) / temperature).softmax(-1)
    return {
        "temperature": temperature,
        "test_ece_ts": expected_calibration_error(probs, test[1]),
    }


class _Progress(Callback):
    def __init__(self, report: Callable[[int, int], None], epochs: int) -> None:
        self.report, self.epochs = report, epochs

    def on_epoch_end(self, state: Any) -> None:
        self.report(state.epoch + 1, self.epochs)


def _optimizer(model: nn.Module, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    if train_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=float(train_cfg["lr"]), momentum=float(train_cfg["momentum"])
        )
    return torch.optim.Adam(model.parameters(), lr=float(train_cfg["lr"]))


def _history_rows(history: Any) -> list[dict[str, float]]:
    """Per-epoch logs as plain floats, without the per-term penalty columns (kept small: they
    are stored in the Optuna storage)."""
    return [
        {k: float(v) for k, v in epoch.items() if not k.startswith("penalty/")}
        for epoch in history.epochs
    ]


def _kernel_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm of all kernels together, the largest norm of one unit's incoming weights (what
    MaxNorm bounds), and the share of kernel entries with |w| < 1e-3."""
    with torch.no_grad():
        kernels = [
            p
            for n, p in model.named_parameters()
            if n.split(".")[-1].startswith("weight") and p.ndim >= 2
        ]
        count = sum(p.numel() for p in kernels)
        return {
            "weight_norm": math.sqrt(sum(float(p.square().sum()) for p in kernels)),
            "max_unit_norm": max(float(p.flatten(1).norm(dim=1).max()) for p in kernels),

            "weight_small_frac": sum(int((p.abs() < 1e-3).sum()) for p in kernels) / count,
        }


def _run_autoencoder(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None
) -> TrialOutcome:
    """A (sparse, denoising) autoencoder ``sizes = [d_in, d_code]`` trained on the inputs."""
    (train, test), val = load_data(config["data"])
    x, xt = train[0], test[0]
    m, train_cfg = config["model"], config["train"]
    if m["linear"]:  # centre with the training mean, as PCA does
        mean = x.mean(0)
        x, xt = x - mean, xt - mean
        val = None if val is None else (val[0] - mean, val[1])
    torch.manual_seed(seed)
    sparse = m["sparsity"] != "none"
    ae: Autoencoder
    if m["linear"]:
        ae = LinearAutoencoder(int(m["sizes"][0]), int(m["sizes"][1]))
    else:
        ae = SparseAutoencoder(
            int(m["sizes"][0]),
            int(m["sizes"][1]),
            m["sparsity"] if sparse else "l1",
            coefficient=float(m["coefficient"]) if sparse else 0.0,
            target=float(m["target"]),
            k=int(m["k"]) or None,
            tied=bool(m["tied"]),
        )
    reg = reglab.attach(ae, config["rules"]) if config.get("rules") else None
    transform = None
    if m["corruption"] != "none":  # denoising: corrupt inputs, targets stay clean

        def transform(batch: torch.Tensor) -> torch.Tensor:
            return corrupt(batch, m["corruption"], float(m["level"]))

    callbacks = (
        [] if epoch_callback is None else [_Progress(epoch_callback, int(train_cfg["epochs"]))]
    )
    held_out = val[0] if val is not None else xt
    start = time.perf_counter()
    history = fit(
        ae,
        (x, x),
        (held_out, held_out),
        loss=ae.loss,
        optimizer=_optimizer(ae, train_cfg),
        epochs=int(train_cfg["epochs"]),
        regularization=reg,
        callbacks=callbacks,
        batch_size=int(train_cfg["batch_size"]),
        seed=seed,
        progress=False,
        transform=transform,
    )
    seconds = time.perf_counter() - start
    if reg is not None:
        reg.remove()
    ae.eval()
    stats = dictionary_metrics(ae, xt)
    with torch.no_grad():
        codes = ae.encode(xt)
    metrics = {
        "train_recon": ae.reconstruction_error(x).mean().item(),
        "test_recon": ae.reconstruction_error(xt).mean().item(),
        "fvu": stats.fvu,
        "l0": stats.l0,
        "dead_fraction": stats.dead_fraction,
        "zero_frac": (codes == 0).double().mean().item(),
        "mean_activation": codes.mean().item(),
        **_kernel_stats(ae),
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    if m["linear"]:
        metrics.update(_pca_comparison(ae, x, xt))
    if config["data"]["labels"]:
        metrics.update(_linear_probe(ae, train, test))
    return TrialOutcome(metrics, _history_rows(history), ae, None)


def _linear_probe(
    ae: Autoencoder,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, float]:
    """Test accuracy of a multinomial logistic regression (scikit-learn) fit on the codes of
    the labelled training rows, and of the same probe on the raw inputs (the baseline a
    representation has to beat)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labelled = train[1] >= 0
    with torch.no_grad():
        views = {
            "probe_test_acc": (ae.encode(train[0][labelled]), ae.encode(test[0])),
            "probe_raw_acc": (train[0][labelled], test[0]),
        }
    out = {}
    for key, (features, test_features) in views.items():
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(features.double().numpy(), train[1][labelled].numpy())
        out[key] = float(probe.score(test_features.double().numpy(), test[1].numpy()))
    return out


def _pca_comparison(ae: Any, x: torch.Tensor, xt: torch.Tensor) -> dict[str, float]:
    """Principal angles between the decoder's span and PCA's top-k subspace (scikit-learn, fit
    on the training rows), and PCA's own test reconstruction error, for the same k."""
    from sklearn.decomposition import PCA

    angles = np.degrees(principal_angles(ae, x))
    pca = PCA(n_components=len(angles)).fit(x.double().numpy())
    test = xt.double().numpy()
    reconstruction = pca.inverse_transform(pca.transform(test))
    return {
        "max_angle": float(angles.max()),
        "mean_angle": float(angles.mean()),
        "pca_recon": float(((reconstruction - test) ** 2).sum(1).mean()),
    }


def _run_bagging(config: dict[str, Any], seed: int) -> TrialOutcome:
    """A bagged ensemble of ``members`` models (Adam, the study's training settings)."""
    (train, test), _ = load_data(config["data"])
    (x, y), (xt, yt) = train, test
    m, train_cfg, ensemble = config["model"], config["train"], config["ensemble"]
    start = time.perf_counter()
    bag = Bagging(
        lambda: build_model(m),
        n_members=int(ensemble["members"]),
        bootstrap=bool(ensemble.get("bootstrap", True)),
        random_state=seed,
        epochs=int(train_cfg["epochs"]),
        batch_size=int(train_cfg["batch_size"]),
        lr=float(train_cfg["lr"]),
    ).fit(x, y)
    seconds = time.perf_counter() - start
    members = bag.member_proba(xt)  # (K, N, C)
    decomposition = error_decomposition(members, F.one_hot(yt, members.shape[-1]).double())
    member_acc = (members.argmax(-1) == yt).double().mean(1)
    proba = bag.predict_proba(xt)
    bins = reliability_diagram(proba, yt, n_bins=15)
    train_acc, test_acc = bag.score(x, y), bag.score(xt, yt)
    metrics = {
        "train_acc": train_acc,
        "test_acc": test_acc,
        "gap": train_acc - test_acc,
        "test_ece": expected_calibration_error(proba, yt),
        "mean_member_acc": member_acc.mean().item(),
        "members": float(decomposition["k"]),
        **{
            k: float(decomposition[k])
            for k in ("v", "c", "predicted_mse", "ensemble_mse", "mean_member_mse", "correlation")
        },
        **_kernel_stats(bag.stack_),
        "seconds": seconds,
    }
    reliability = {
        "count": bins.count.tolist(),
        "confidence": bins.confidence.tolist(),
        "accuracy": bins.accuracy.tolist(),
    }
    return TrialOutcome(metrics, [], bag.stack_, reliability)


def _run_regression(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None
) -> TrialOutcome:
    """A linear model ``fc0: Linear(d, 1, bias=False)`` trained from zero on the teacher's
    mean squared error, with the grid's penalties, constraints or norm bound; compared with
    the closed forms of :mod:`reglab.lab.regression`. Zero initialisation keeps gradient
    descent in the row space of X, so with no penalty it converges to ``pinv(X) y``."""
    (train, test), _ = load_data(config["data"], seed)
    (x, y), (xt, yt) = train, test
    net = nn.Sequential(OrderedDict(fc0=nn.Linear(x.shape[1], 1, bias=False)))
    nn.init.zeros_(net.fc0.weight)
    regularizers: list[Any] = []
    if config.get("rules"):
        regularizers.append(reglab.attach(net, config["rules"]))
    if config.get("norm_bound"):
        bound = config["norm_bound"]
        regularizers.append(
            NormBound(
                [net.fc0.weight], float(bound["max_norm"]), lr_dual=float(bound.get("lr_dual", 0.1))
            )
        )
    train_cfg = config["train"]
    callbacks = (
        [] if epoch_callback is None else [_Progress(epoch_callback, int(train_cfg["epochs"]))]
    )

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out.squeeze(-1), target)

    start = time.perf_counter()
    history = fit(
        net,
        (x, y),
        None,  # thousands of full-batch epochs: the test error is measured once, at the end
        loss=mse,
        optimizer=_optimizer(net, train_cfg),
        epochs=int(train_cfg["epochs"]),
        regularization=regularizers,
        callbacks=callbacks,
        batch_size=int(train_cfg["batch_size"]),
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - start
    for reg in regularizers:
        if hasattr(reg, "remove"):
            reg.remove()
    with torch.no_grad():
        w = net.fc0.weight.detach().double().ravel()
        metrics = {
            "train_mse": mse(net(x), y).item(),
            "test_mse": mse(net(xt), yt).item(),
            "weight_norm": float(w.norm()),
            **ridge_metrics(w.numpy(), x.double().numpy(), y.double().numpy()),
            "epochs_run": float(len(history)),
            "seconds": seconds,
        }
    return TrialOutcome(metrics, _history_rows(history), net, None)


def _run_language_model(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None
) -> TrialOutcome:
    """An :class:`~reglab.lab.language.LSTMLanguageModel` (``model.options`` are its keyword
    arguments, plus ``bptt``, the window length) trained on windows of the Gutenberg corpus;
    perplexities and the AR/TAR activation statistics of :func:`language_model_metrics`."""
    options = dict(config["model"]["options"])
    length = int(options.pop("bptt", 35))
    vocab_size, splits = corpus_windows(config["data"], length)
    torch.manual_seed(seed)
    try:
        model = LSTMLanguageModel(vocab_size, **options)
    except TypeError as err:
        raise InvalidParameterError(f"model.options: {err}") from None
    regularizers = [reglab.attach(model.body, config["rules"])] if config.get("rules") else []
    train_cfg = config["train"]
    callbacks = (
        [] if epoch_callback is None else [_Progress(epoch_callback, int(train_cfg["epochs"]))]
    )
    start = time.perf_counter()
    history = fit(
        model,
        splits["train"],
        splits["valid"],
        loss=sequence_loss,
        optimizer=_optimizer(model, train_cfg),
        epochs=int(train_cfg["epochs"]),
        regularization=regularizers,
        callbacks=callbacks,
        batch_size=int(train_cfg["batch_size"]),
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - start
    for reg in regularizers:
        reg.remove()
    metrics = {
        **language_model_metrics(model, splits),
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    return TrialOutcome(metrics, _history_rows(history), model, None)
