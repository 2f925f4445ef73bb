"""Classifier trials: an MLP, optionally pre-trained or sharing its trunk (semi-supervised,
multi-task), with the grid's regularizers; the loss-side techniques (R-Drop, confidence
penalty, input gradient), magnitude pruning and consistency training (mean teacher, Π-model)
are wired in here (:func:`technique_loss`, :func:`pruning`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reglab.autoencoders import pretrain_layerwise
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import load_data
from reglab.lab.settings.techniques import PruneConfig
from reglab.lab.settings.train import TrainConfig
from reglab.lab.work.bagging import run_bagging
from reglab.lab.work.init import load_init
from reglab.lab.work.posthoc import post_hoc_stopping
from reglab.lab.work.training import (
    TrialContext,
    TrialOutcome,
    grid_regularizers,
    history_rows,
    kernel_stats,
    train_model,
)
from reglab.losses import (
    ConfidencePenalty,
    LabelSmoothingCrossEntropy,
    RDrop,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from reglab.penalties import InputGradient
from reglab.pruning import MagnitudePruning, magnitude_prune
from reglab.sharing import MeanTeacher, MultiTask, PiModel, SemiSupervised
from reglab.stochastic import CutMix, GaussianNoise, MixUp, RandomAffine, WeightNoise
from reglab.training import Callback, accuracy

__all__ = [
    "build_network",
    "classifier_metrics",
    "criterion",
    "pruning",
    "run_classifier",
    "technique_loss",
]


def build_network(config: TrialConfig) -> nn.Module:
    """The trial's network as trained (what its rules are matched against)."""
    return _with_weight_noise(config.model.build(config.data), config)


def _with_weight_noise(net: nn.Module, config: TrialConfig) -> nn.Module:
    """Every ``Linear`` child under :class:`~reglab.stochastic.WeightNoise` for
    ``weight_noise``."""
    if config.weight_noise:
        for name, module in list(net.named_children()):
            if isinstance(module, nn.Linear):
                setattr(net, name, WeightNoise(module, "weight", config.weight_noise))
    return net


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
    # activation statistics of the modules named act*; a model without them (a factory's)
    # has none, reported as not measured rather than as 0
    activations = (
        {"zero_frac": zeros / total, "mean_activation": sum(float(c.sum()) for c in codes) / total}
        if total
        else {}
    )
    return {
        "reliability": {
            "count": bins.count.tolist(),
            "confidence": bins.confidence.tolist(),
            "accuracy": bins.accuracy.tolist(),
        },
        "acc": accuracy(logits, y).item(),
        "loss": F.cross_entropy(logits, y).item(),
        "ece": expected_calibration_error(probs, y),
        **activations,
    }


def run_classifier(config: TrialConfig, seed: int, context: TrialContext) -> TrialOutcome:
    """A classifier, optionally pre-trained layer-wise, shared with a decoder
    (semi-supervised) or with a parity head (multi-task); a bagged ensemble of it when the point
    has ``ensemble`` (:func:`~reglab.lab.work.bagging.run_bagging`)."""
    if config.ensemble is not None:
        return run_bagging(config, seed, context)
    (train, test), val = load_data(config.data)
    torch.manual_seed(seed)
    net = config.model.build(config.data)
    if config.pretrain is not None:  # on every training row, labelled or not
        pre = config.pretrain
        pretrain_layerwise(
            net,
            train[0],
            kind=pre.kind,
            epochs=pre.epochs,
            level=pre.level,
            lr=config.train.lr,
            batch_size=config.train.batch_size,
            seed=seed,
        )
    net = _with_weight_noise(net, config)
    load_init(config, seed, net, context.device)  # [train] init: start from trained weights
    regularizers = grid_regularizers(config, net)
    model, fit_train, fit_monitor, loss, weights, acc = _task_setup(
        config, net, criterion(config), train, val, test
    )
    loss, loss_hooks = technique_loss(config, net, loss)
    callbacks: list[Callback] = []
    if isinstance(model, PiModel):  # mean teacher too: count steps, move the teacher
        callbacks.append(_BindConsistency(model))
    if config.prune is not None:  # fit drives its schedule (after_step); removed after it
        regularizers.append(pruning(config.prune, config.train, net, len(fit_train[0])))
    stopper = None
    if config.early_stopping is not None:
        stopper = config.early_stopping.build()
        callbacks.append(stopper)
    if config.post_hoc_stopping is not None:
        callbacks.append(_TestCurve(net, test))
    try:
        history, seconds = train_model(
            model,
            fit_train,
            fit_monitor,
            config,
            seed,
            context,
            regularizers=regularizers,
            callbacks=callbacks,
            loss=loss,
            loss_weights=weights,
            metrics={"acc": acc},
            transform=_transform(config),
            batch_transform=_mixer(config),
        )
    finally:
        for hook in loss_hooks:
            hook.remove()
    metrics = classifier_metrics(net, train, val, test, seed, model)
    metrics.update(epochs_run=float(len(history)), seconds=seconds)
    reliability = metrics.pop("reliability")
    if stopper is not None:
        metrics["best_epoch"] = float(stopper.best_epoch)
    rows = history_rows(history)
    if config.post_hoc_stopping is not None:
        metrics.update(post_hoc_stopping(rows, config.post_hoc_stopping.settings()))
    return TrialOutcome(metrics, rows, net, reliability)


def technique_loss(config: TrialConfig, net: nn.Module, loss: Any) -> tuple[Any, list[Any]]:
    """``loss`` with the point's loss-side techniques, and the hooks to remove after training.

    Built inside out: ``confidence_penalty`` (``loss − β·H``), then ``rdrop`` (a second
    dropout pass of ``net``, ``loss`` averaged over both plus ``α``·symmetric KL), then
    ``input_gradient`` (double backpropagation through ``net``). They act on training batches
    only: held-out batches (``val_loss``, early stopping) get the plain ``loss``."""
    plain, hooks = loss, []
    if config.confidence_penalty is not None:
        loss = ConfidencePenalty(config.confidence_penalty.beta, loss)
    if config.rdrop is not None:
        loss = RDrop(net, config.rdrop.alpha, loss)
        hooks.append(loss)
    if config.input_gradient is not None:
        grad = config.input_gradient
        penalty = InputGradient(grad.coefficient, grad.target, grad.n_projections or None)
        loss = penalty.loss_for(net, loss)
        hooks.append(loss)
    if loss is plain:
        return plain, []
    return _TrainingOnly(net, loss, plain), hooks


class _TrainingOnly:
    """``loss`` while ``net`` trains, ``plain`` in eval mode (held-out batches)."""

    def __init__(self, net: nn.Module, loss: Any, plain: Any) -> None:
        self.net, self.loss, self.plain = net, loss, plain

    def __call__(self, output: torch.Tensor, y: Any) -> torch.Tensor:
        return (self.loss if self.net.training else self.plain)(output, y)


def pruning(prune: PruneConfig, train: TrainConfig, net: nn.Module, rows: int) -> MagnitudePruning:
    """The ``prune`` table as :func:`~reglab.pruning.magnitude_prune` on ``net`` for ``train``
    on ``rows`` rows (its epochs become optimizer steps); ``fit`` advances it."""
    per_epoch = max(1, math.ceil(rows / train.batch_size))
    begin, end = prune.window(train.epochs)
    if prune.schedule == "one_shot":  # the whole amount after step begin·per_epoch (>= 1)
        start, steps = max(0, begin * per_epoch - 1), 1
    else:
        start, steps = begin * per_epoch, (end - begin) * per_epoch
    return magnitude_prune(
        net,
        prune.amount,
        scope=prune.scope,
        steps=steps,
        begin=start,
        frequency=prune.frequency,
    )


class _BindConsistency(Callback):
    """Binds a mean teacher / Π-model to ``fit``'s optimizer (step count for the ramp-up, the
    teacher's EMA) for the run, and unbinds it after."""

    def __init__(self, model: PiModel) -> None:
        self.model = model

    def on_train_begin(self, state: Any) -> None:
        self.model.bind(state.optimizer)

    def on_train_end(self, state: Any) -> None:
        self.model.remove()


def criterion(config: TrialConfig) -> Callable[..., torch.Tensor]:
    """Cross-entropy, label-smoothed when the point says so. With ``mix``, training batches
    carry class probabilities (smoothed before mixing) and take plain soft cross-entropy;
    held-out batches keep class indices."""
    smoothing = config.label_smoothing
    hard: Callable[..., torch.Tensor] = F.cross_entropy
    if smoothing is not None and smoothing.eps > 0:
        hard = LabelSmoothingCrossEntropy(smoothing.eps, smoothing.form)
    if config.mix is None:
        return hard

    def mixed(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y) if y.is_floating_point() else hard(logits, y)

    return mixed


def _mixer(config: TrialConfig) -> nn.Module | None:
    """The ``mix`` batch transform (mixup or CutMix), or None."""
    if config.mix is None:
        return None
    eps = config.label_smoothing.eps if config.label_smoothing is not None else 0.0
    classes = config.data.dataset.classes
    if config.mix.kind == "mixup":
        return MixUp(classes, config.mix.alpha, eps)  # type: ignore[arg-type]
    image = config.data.dataset.image
    return CutMix(classes, config.mix.alpha, eps, image_shape=image[1:])  # type: ignore[arg-type,index]


def classifier_metrics(
    net: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    test: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Everything a classifier trial reports about a trained ``net`` (``model``: the shared
    wrapper it was trained in, for the second task's metrics). ``reliability`` holds the
    test set's bins. ``val_acc`` and ``val_loss`` (on the validation rows, when the study
    holds some out) are what the sweep chooses on; the test metrics decide nothing."""
    labelled = train[1] >= 0
    on_train = _evaluate(net, train[0][labelled], train[1][labelled])
    on_test = _evaluate(net, *test)
    on_val = {}
    if val is not None:
        scored = _evaluate(net, val[0][val[1] >= 0], val[1][val[1] >= 0])
        on_val = {"val_acc": scored["acc"], "val_loss": scored["loss"], "val_ece": scored["ece"]}
    return {
        "train_acc": on_train["acc"],
        **on_val,
        "test_acc": on_test["acc"],
        "gap": on_train["acc"] - on_test["acc"],
        "train_loss": on_train["loss"],
        "test_loss": on_test["loss"],
        "test_ece": on_test["ece"],
        **{k: on_test[k] for k in ("zero_frac", "mean_activation") if k in on_test},
        **kernel_stats(net),
        **_dropout_inference(net, *test, seed),
        **(_temperature_scaled(net, val, test) if val is not None else {}),
        **(_shared_task_metrics(model, test) if model is not None else {}),
        "reliability": on_test["reliability"],
    }


def _task_setup(
    config: TrialConfig,
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
    if config.semi_supervised is not None and config.semi_supervised.method != "reconstruction":
        semi_cfg = config.semi_supervised
        per_epoch = max(1, math.ceil(len(train[0]) / config.train.batch_size))
        options = dict(
            consistency=semi_cfg.consistency,
            ramp_up=semi_cfg.ramp_up * per_epoch,
            noise=semi_cfg.noise,
            rows=semi_cfg.rows,
        )
        consistency: PiModel = (
            MeanTeacher(net, ema_decay=semi_cfg.ema_decay, **options)  # type: ignore[arg-type]
            if semi_cfg.method == "mean_teacher"
            else PiModel(net, **options)  # type: ignore[arg-type]
        )
        return consistency, train, monitor, consistency.loss, None, accuracy
    if config.semi_supervised is not None:
        recon = config.semi_supervised.recon_weight
        semi = SemiSupervised(trunk, nn.Linear(hidden, d_in), head, recon)
        return semi, train, monitor, semi.loss, None, lambda out, t: accuracy(out.logits, t)
    if config.multitask is not None:
        weight = config.multitask.parity_weight
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


def _transform(config: TrialConfig) -> nn.Module | None:
    """Input augmentation and noise, applied to training batches only."""
    transforms: list[nn.Module] = []
    if config.augment is not None:
        aug = config.augment
        transforms.append(
            RandomAffine(
                aug.degrees, aug.translate, aug.scale, image_shape=config.data.dataset.image
            )
        )
    if config.input_noise:
        transforms.append(GaussianNoise(config.input_noise))
    return nn.Sequential(*transforms) if transforms else None


class _TestCurve(Callback):
    """Logs ``test_acc`` and ``test_loss`` every epoch, for post-hoc stopping analyses only
    (no decision during training reads them)."""

    def __init__(self, net: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.net, self.test = net, test

    def on_epoch_end(self, state: Any) -> None:
        was_training = self.net.training
        device = next(self.net.parameters()).device
        if self.test[0].device != device:  # moved once, to where the net trains
            self.test = (self.test[0].to(device), self.test[1].to(device))
        on_test = _evaluate(self.net, *self.test)
        self.net.train(was_training)
        state.logs["test_acc"], state.logs["test_loss"] = on_test["acc"], on_test["loss"]


@torch.no_grad()
def _shared_task_metrics(
    model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """What the second task of a shared model learned, on the test rows: the semi-supervised
    decoder's reconstruction error (``test_recon``, squared error summed over features, with
    ``input_var``, that of predicting the mean, for scale), the mean teacher's accuracy
    (``teacher_test_acc``) or the parity head's accuracy."""
    model.eval()
    if isinstance(model, SemiSupervised):
        out = model(test[0])
        return {
            "test_recon": float((out.reconstruction - test[0]).square().sum(1).mean()),
            "input_var": float(test[0].var(0, unbiased=False).sum()),
        }
    if isinstance(model, MeanTeacher):
        teacher = model.teacher.eval()(test[0]).argmax(-1)
        return {"teacher_test_acc": float((teacher == test[1]).double().mean())}
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
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    if not dropouts:
        return {}
    net.eval()  # batch norm keeps its running statistics: only the dropout masks vary
    for m in dropouts:
        m.train()
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
