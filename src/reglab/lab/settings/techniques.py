"""The grid's technique tables (``label_smoothing``, ``augment``, ``mix``, ``early_stopping``,
``ensemble``, ``pretrain``, ``semi_supervised``, ``multitask``, ``post_hoc_stopping``): parsed
and validated here; the trials (:mod:`reglab.lab.work`) train with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    "EarlyStoppingConfig",
    "EnsembleConfig",
    "LabelSmoothingConfig",
    "MixConfig",
    "MultiTaskConfig",
    "PostHocConfig",
    "PretrainConfig",
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


@dataclass(frozen=True)
class SemiSupervisedConfig(Table):
    """``semi_supervised = { recon_weight }``: the trunk shared with a decoder."""

    recon_weight: float = spec(1.0, number(0.0))


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
