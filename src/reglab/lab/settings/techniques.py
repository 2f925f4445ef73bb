"""The grid's technique tables (``label_smoothing``, ``augment``, ``mix``, ``early_stopping``,
``ensemble``, ``pretrain``, ``semi_supervised``, ``multitask``, ``post_hoc_stopping``, ``sam``,
``rdrop``, ``confidence_penalty``, ``prune``, ``input_gradient``, ``layer_decay``): parsed and
validated here; the trials (:mod:`reglab.lab.work`) train with them. Checks that involve other
tables (``sam`` needs ``train.optimizer = "sam"``, ...) are ``TrialConfig``'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from reglab._validation import InvalidParameterError
from reglab.lab.settings.schema import (
    Table,
    boolean,
    choice,
    fail,
    integer,
    number,
    sequence_of,
    spec,
    string,
)
from reglab.training import EarlyStopping

__all__ = [
    "AugmentConfig",
    "ConfidencePenaltyConfig",
    "EarlyStoppingConfig",
    "EnsembleConfig",
    "InputGradientConfig",
    "LabelSmoothingConfig",
    "LayerDecayConfig",
    "MixConfig",
    "MultiTaskConfig",
    "PostHocConfig",
    "PretrainConfig",
    "PruneConfig",
    "RDropConfig",
    "SamConfig",
    "SemiSupervisedConfig",
]


@dataclass(frozen=True)
class LabelSmoothingConfig(Table):
    """``label_smoothing = { eps, form }`` (a number is shorthand for ``eps``)."""

    eps: float = spec(0.1, number(0.0, below=1.0))
    form: str = spec("uniform", choice("uniform", "others"))

    @classmethod
    def parse(cls, raw: Any, path: str, origins: Any = None) -> LabelSmoothingConfig:
        if not isinstance(raw, dict):  # the shorthand
            raw = {"eps": raw}
        return super().parse(raw, path, origins)


@dataclass(frozen=True)
class MixConfig(Table):
    """``mix = { kind, alpha }``: mixup or CutMix of every training batch, labels mixed into
    class probabilities (:mod:`reglab.stochastic.mixing`; label smoothing, if any, is applied
    to the labels before mixing)."""

    kind: str = spec(check=choice("mixup", "cutmix"))
    #: λ ~ Beta(α, α); 1.0 as in both papers' CIFAR runs
    alpha: float = spec(1.0, number(above=0.0))


def _scale_range(path: str, value: Any) -> tuple[float, float]:
    low, high = sequence_of(number(above=0.0), length=2, what="[low, high] zoom factors")(
        path, value
    )
    if low > high:
        raise fail(path, "expected [low, high] with low <= high", value)
    return low, high


@dataclass(frozen=True)
class AugmentConfig(Table):
    """``augment = { degrees, translate, scale }``: random affine transforms of the training
    images (:class:`~reglab.stochastic.RandomAffine`)."""

    degrees: float = spec(10.0, number(0.0))
    translate: float = spec(0.1, number(0.0, 1.0))
    scale: tuple[float, float] = spec((0.9, 1.1), _scale_range)


def _optional_number(**bounds: Any) -> Any:
    inner = number(**bounds)
    return lambda path, value: None if value is None else inner(path, value)


def _optional_int(minimum: int) -> Any:
    inner = integer(minimum)
    return lambda path, value: None if value is None else inner(path, value)


@dataclass(frozen=True)
class EarlyStoppingConfig(Table):
    """``early_stopping = {...}``: the arguments of
    :class:`~reglab.training.EarlyStopping` (validated by building one)."""

    monitor: str = spec("val_loss", string())
    patience: int = spec(0, integer(0))
    min_delta: float = spec(0.0, number())
    restore_best_weights: bool = spec(False, boolean())
    criterion: str = spec("patience", choice("patience", "gl", "pq", "up"))
    alpha: float | None = spec(None, _optional_number(minimum=0.0))
    strip_length: int = spec(5, integer(1))
    successive_strips: int | None = spec(None, _optional_int(1))
    start_from_epoch: int = spec(0, integer(0))

    @classmethod
    def parse(cls, raw: Any, path: str, origins: Any = None) -> EarlyStoppingConfig:
        config = super().parse(raw, path, origins)
        try:
            config.build()
        except InvalidParameterError as err:
            raise fail(path, str(err).rstrip("."), raw) from None
        return config

    def build(self) -> EarlyStopping:
        return EarlyStopping(**self.to_dict())


@dataclass(frozen=True)
class PretrainConfig(Table):
    """``pretrain = { kind, epochs, level }``: greedy layer-wise (denoising) autoencoder
    pre-training of the MLP on every training row."""

    kind: str = spec("denoising", choice("autoencoder", "denoising"))
    epochs: int = spec(10, integer(1))
    level: float = spec(0.25, number(0.0, below=1.0))


#: ``semi_supervised.method`` -> the keys that apply to it (besides ``method``).
SEMI_SUPERVISED_KEYS = {
    "reconstruction": ("recon_weight",),
    "mean_teacher": ("consistency", "ramp_up", "noise", "rows", "ema_decay"),
    "pi_model": ("consistency", "ramp_up", "noise", "rows"),
}


@dataclass(frozen=True)
class SemiSupervisedConfig(Table):
    """``semi_supervised = { method, ... }``: learning from the unlabelled rows too.

    * ``method = "reconstruction"`` (default; ``recon_weight``): the trunk shared with a
      decoder (:class:`~reglab.sharing.SemiSupervised`).
    * ``"mean_teacher"`` (``consistency``, ``ramp_up``, ``noise``, ``rows``, ``ema_decay``) and
      ``"pi_model"`` (the same but ``ema_decay``): a consistency loss between two perturbed
      predictions (:class:`~reglab.sharing.MeanTeacher`, :class:`~reglab.sharing.PiModel`);
      ``ramp_up`` counts **epochs** here (the library counts optimizer steps).

    A key of another method is an error (it would be silently ignored)."""

    method: str = spec("reconstruction", choice(*SEMI_SUPERVISED_KEYS))
    recon_weight: float = spec(1.0, number(0.0))
    #: the consistency weight ``w`` reached after the ramp-up
    consistency: float = spec(1.0, number(0.0))
    ramp_up: int = spec(0, integer(0))
    #: standard deviation of the Gaussian input noise of each prediction
    noise: float = spec(0.0, number(0.0))
    rows: str = spec("all", choice("all", "unlabelled"))
    ema_decay: float = spec(0.99, number(0.0, 1.0))

    @classmethod
    def parse(cls, raw: Any, path: str, origins: Any = None) -> SemiSupervisedConfig:
        config = super().parse(raw, path, origins)
        own = SEMI_SUPERVISED_KEYS[config.method]
        for key in sorted(set(raw or {}) - {"method", *own}):
            raise fail(
                f"{path}.{key}",
                f"does not apply to method = {config.method!r} (its keys: {', '.join(own)})",
                raw[key],
            )
        return config


@dataclass(frozen=True)
class MultiTaskConfig(Table):
    """``multitask = { parity_weight }``: the trunk shared with a digit-parity head."""

    parity_weight: float = spec(1.0, number(0.0))


def _thresholds(path: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise fail(path, "expected a list of thresholds > 0", value)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class PostHocConfig(Table):
    """``post_hoc_stopping = { patience, gl, pq, up }``: thresholds of each criterion,
    replayed over the logged curves."""

    patience: tuple[float, ...] = spec((), _thresholds)
    gl: tuple[float, ...] = spec((), _thresholds)
    pq: tuple[float, ...] = spec((), _thresholds)
    up: tuple[float, ...] = spec((), _thresholds)

    def settings(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.to_dict().items() if v}


@dataclass(frozen=True)
class EnsembleConfig(Table):
    """``ensemble = { members, bootstrap }``: a :class:`~reglab.ensembles.Bagging` of the
    study's model (Adam at the study's ``lr``, ``epochs`` and ``batch_size``)."""

    members: int = spec(check=integer(1))
    bootstrap: bool = spec(True, boolean())


class _Shorthand(Table):
    """A table whose bare number means ``{ <_shorthand> = number }``."""

    _shorthand: ClassVar[str]

    @classmethod
    def parse(cls, raw: Any, path: str, origins: Any = None) -> Any:
        if not isinstance(raw, Mapping):
            raw = {cls._shorthand: raw}
        return super().parse(raw, path, origins)


@dataclass(frozen=True)
class SamConfig(Table):
    """``sam = { rho, adaptive, base }`` with ``train.optimizer = "sam"``: sharpness-aware
    minimization (:class:`~reglab.optim.SAM`; ASAM with ``adaptive = true``) around the
    ``base`` optimizer, which takes the ``[train]`` table's ``lr``, ``momentum`` (SGD) and
    ``weight_decay``. Each step costs two forward-backward passes."""

    #: the neighbourhood radius ρ (the paper: 0.05 for SAM; ASAM uses ~10x larger)
    rho: float = spec(0.05, number(above=0.0))
    adaptive: bool = spec(False, boolean())
    base: str = spec("sgd", choice("sgd", "adam", "adamw"))


@dataclass(frozen=True)
class RDropConfig(_Shorthand):
    """``rdrop = { alpha }`` (a number is shorthand): R-Drop (:class:`~reglab.losses.RDrop`),
    the loss averaged over two dropout passes plus ``alpha`` times their symmetric KL (batch
    mean). Needs a model with dropout."""

    alpha: float = spec(1.0, number(0.0))

    _shorthand: ClassVar[str] = "alpha"


@dataclass(frozen=True)
class ConfidencePenaltyConfig(_Shorthand):
    """``confidence_penalty = { beta }`` (a number is shorthand): the training loss minus
    ``beta`` times the mean predictive entropy (:class:`~reglab.losses.ConfidencePenalty`)."""

    beta: float = spec(0.1, number(0.0))

    _shorthand: ClassVar[str] = "beta"


@dataclass(frozen=True)
class PruneConfig(_Shorthand):
    """``prune = { amount, scope, schedule, begin, end, frequency }`` (a number is shorthand
    for ``amount``): magnitude pruning of every ``Linear`` and convolution weight
    (:func:`~reglab.pruning.magnitude_prune`) to the fraction ``amount`` of exact zeros, ranked
    over all of them (``scope = "global"``) or per layer (``"layer"``).

    ``schedule = "gradual"`` (default): Zhu & Gupta's cubic ramp from 0 after epoch ``begin``
    to ``amount`` at epoch ``end`` (default: three quarters of ``train.epochs``, leaving the
    rest to fine-tune), re-pruned every ``frequency`` optimizer steps. ``"one_shot"``: all at
    once after epoch ``begin`` (0: after the first step), then fine-tuning. The masks keep
    pruned weights at 0 to the end; the trial's ``weight_zero_frac`` reports the result."""

    amount: float = spec(check=number(0.0, 1.0))
    scope: str = spec("global", choice("global", "layer"))
    schedule: str = spec("gradual", choice("gradual", "one_shot"))
    begin: int = spec(0, integer(0))
    end: int | None = spec(None, _optional_int(1))
    frequency: int = spec(10, integer(1))

    _shorthand: ClassVar[str] = "amount"

    def window(self, epochs: int) -> tuple[int, int]:
        """``(begin, end)`` epochs of the ramp for a trial of ``epochs`` epochs."""
        if self.schedule == "one_shot":
            return self.begin, self.begin
        return self.begin, self.end if self.end is not None else max(1, (3 * epochs) // 4)


@dataclass(frozen=True)
class InputGradientConfig(_Shorthand):
    """``input_gradient = { coefficient, target, n_projections }`` (a number is shorthand for
    ``coefficient``): the input-gradient penalty by double backpropagation
    (:class:`~reglab.penalties.InputGradient`): ``coefficient · mean_i ‖∂ℓ_i/∂x_i‖²``
    (``target = "loss"``) or ``coefficient · mean_i ‖J_i‖_F²`` (``"jacobian"``, estimated
    with ``n_projections`` random projections; 0: exact)."""

    coefficient: float = spec(0.01, number(0.0))
    target: str = spec("loss", choice("loss", "jacobian"))
    n_projections: int = spec(1, integer(0))

    _shorthand: ClassVar[str] = "coefficient"


@dataclass(frozen=True)
class LayerDecayConfig(_Shorthand):
    """``layer_decay = { decay }`` (a number is shorthand): layer-wise learning-rate decay
    (:func:`reglab.param_groups` with ``layer_decay``): the head trains at ``train.lr``,
    the layer k below it at ``lr · decay**k`` (layers numbered as :func:`reglab.optim.layer_ids`
    does)."""

    decay: float = spec(check=number(above=0.0, maximum=1.0))

    _shorthand: ClassVar[str] = "decay"
