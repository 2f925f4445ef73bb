"""Convolutional study models: a plain CNN (``[model] kind = "cnn"``) and a small pre-activation
ResNet (``kind = "resnet"``) for grayscale images (28×28 MNIST / Fashion-MNIST, 8×8 digits).

Both take the datasets' flattened rows ``(B, H·W)`` and reshape them (module ``image``), so
every classifier technique of the lab works unchanged. Module names, for rules:

* CNN: ``image``, then per block ``i``: ``conv{i}``, ``bn{i}``, ``act{i}``, ``pool{i}``,
  ``sdrop{i}`` (``Dropout2d``, spatial dropout) and ``dblock{i}`` (``DropBlock``); then
  ``gpool`` (global pooling), ``flat``, ``drop`` (dropout), ``fc0``/``act_fc`` (an optional
  hidden layer) and ``fc{n}`` (the head). ``"conv*"`` selects every convolution, ``"fc*"``
  every Linear, ``"act*"`` every activation.
* ResNet: ``image``, ``stem`` (3×3 conv), ``stage{s}`` (``nn.Sequential`` of blocks
  ``stage{s}.{b}`` with ``norm1``, ``act1``, ``conv1``, ``norm2``, ``act2``, ``conv2``,
  ``drop_path`` and, where the shape changes, ``shortcut``), ``norm``, ``act``, ``gpool``,
  ``flat``, ``drop``, ``fc``. ``"*conv*"`` selects every convolution.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from reglab._validation import check_choice, check_probability
from reglab.lab.kinds.mlp import ACTIVATIONS
from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import (
    KeyPath,
    Table,
    boolean,
    choice,
    fail,
    integer,
    number,
    sequence_of,
    spec,
)
from reglab.lab.work.classifier import build_network, run_classifier
from reglab.stochastic import DropBlock, DropPath

__all__ = ["CNN_KIND", "RESNET_KIND", "CNNModel", "PreActBlock", "ResNetModel", "cnn", "resnet"]


def _image(data: DataConfig, where: KeyPath) -> tuple[int, int, int]:
    image = data.dataset.image
    if image is None or data.dataset.classes is None:
        raise fail(where("kind"), f"'{data.title}' is not a set of labelled images", data.title)
    return image


def cnn(
    image: tuple[int, int, int],
    classes: int,
    channels: Sequence[int] = (16, 32),
    kernel_size: int = 3,
    downsample: str = "max",
    batch_norm: bool = True,
    activation: str = "relu",
    spatial_dropout: float = 0.0,
    drop_block: float = 0.0,
    block_size: int = 3,
    pool: str = "avg",
    hidden: int = 0,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Conv blocks (``conv → bn → act → 2× downsampling → spatial dropout → DropBlock``), a
    global pooling (``"avg"``, ``"max"``, or ``"flatten"`` to keep the map) and a head
    (dropout, an optional hidden Linear, the class Linear). ``downsample``: ``"max"`` /
    ``"avg"`` pooling, ``"stride"`` (stride-2 convolutions) or ``"none"``.

    Shape:
        ``(B, C·H·W)`` -> ``(B, classes)``.

    >>> cnn((1, 8, 8), 10, channels=[4])(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    check_choice(downsample, "downsample", "cnn", ("max", "avg", "stride", "none"))
    check_choice(pool, "pool", "cnn", ("avg", "max", "flatten"))
    check_choice(activation, "activation", "cnn", ACTIVATIONS)
    for name, rate in (("spatial_dropout", spatial_dropout), ("drop_block", drop_block),
                       ("dropout", dropout)):  # fmt: skip
        check_probability(rate, name, "cnn")
    c, h, w = image
    layers: dict[str, nn.Module] = {"image": nn.Unflatten(1, image)}
    for i, width in enumerate(channels):
        stride = 2 if downsample == "stride" else 1
        layers[f"conv{i}"] = nn.Conv2d(
            c, width, kernel_size, stride=stride, padding=kernel_size // 2, bias=not batch_norm
        )
        if batch_norm:
            layers[f"bn{i}"] = nn.BatchNorm2d(width)
        layers[f"act{i}"] = ACTIVATIONS[activation]()
        if downsample in ("max", "avg"):
            layers[f"pool{i}"] = (nn.MaxPool2d if downsample == "max" else nn.AvgPool2d)(2)
        if downsample == "stride":  # 3×3, padding 1, stride 2: ceil(h / 2)
            h, w = (h + 1) // 2, (w + 1) // 2
        elif downsample != "none":
            h, w = h // 2, w // 2
        if spatial_dropout:
            layers[f"sdrop{i}"] = nn.Dropout2d(spatial_dropout)
        if drop_block:
            layers[f"dblock{i}"] = DropBlock(drop_block, block_size)
        c = width
    features = c * h * w if pool == "flatten" else c
    if pool != "flatten":
        layers["gpool"] = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
    layers["flat"] = nn.Flatten()
    if dropout:
        layers["drop"] = nn.Dropout(dropout)
    n = 0
    if hidden:
        layers["fc0"], layers["act_fc"] = nn.Linear(features, hidden), ACTIVATIONS[activation]()
        features, n = hidden, 1
    layers[f"fc{n}"] = nn.Linear(features, classes)
    return nn.Sequential(OrderedDict(layers))


class PreActBlock(nn.Module):
    """A pre-activation basic block (He et al. 2016, "Identity mappings"): ``x +
    drop_path(conv(act(norm(conv(act(norm(x)))))))``, with a 1×1 convolution on the shortcut
    where the width or the resolution changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, drop_path: float) -> None:
        super().__init__()
        self.norm1, self.act1 = nn.BatchNorm2d(c_in), nn.ReLU()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm2, self.act2 = nn.BatchNorm2d(c_out), nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.drop_path = DropPath(drop_path)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))  # (B, C, H, W)
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv2(self.act2(self.norm2(self.conv1(pre))))
        return skip + self.drop_path(out)


def resnet(
    image: tuple[int, int, int],
    classes: int,
    stages: Sequence[int] = (1, 1, 1),
    width: int = 16,
    drop_path: float = 0.0,
    dropout: float = 0.0,
) -> nn.Sequential:
    """A pre-activation ResNet: a 3×3 stem of ``width`` channels, then stage ``s`` of
    ``stages[s]`` blocks of ``width · 2^s`` channels (stride 2 at each later stage's start),
    a final norm and ReLU, global average pooling, dropout and the class Linear. Stochastic
    depth rises linearly over the blocks to ``drop_path`` at the last (Huang et al. 2016).

    Shape:
        ``(B, C·H·W)`` -> ``(B, classes)``.

    >>> resnet((1, 8, 8), 10, stages=[1, 1], width=4)(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    total = sum(stages)
    layers: dict[str, nn.Module] = {
        "image": nn.Unflatten(1, image),
        "stem": nn.Conv2d(image[0], width, 3, padding=1, bias=False),
    }
    c_in, index = width, 0
    for s, n_blocks in enumerate(stages):
        c_out = width * 2**s
        blocks = []
        for b in range(n_blocks):
            rate = drop_path * index / max(1, total - 1) if total > 1 else drop_path
            blocks.append(PreActBlock(c_in, c_out, 2 if (s > 0 and b == 0) else 1, rate))
            c_in, index = c_out, index + 1
        layers[f"stage{s}"] = nn.Sequential(*blocks)
    layers.update(
        norm=nn.BatchNorm2d(c_in),
        act=nn.ReLU(),
        gpool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
    )
    if dropout:
        layers["drop"] = nn.Dropout(dropout)
    layers["fc"] = nn.Linear(c_in, classes)
    return nn.Sequential(OrderedDict(layers))


_RATE = number(0.0, below=1.0)


@dataclass(frozen=True)
class CNNModel(Table):
    """``[model] kind = "cnn"``: :func:`cnn`."""

    kind: ClassVar[str] = "cnn"
    channels: tuple[int, ...] = spec(
        (16, 32), sequence_of(integer(1), what="a list of channel counts (ints >= 1)")
    )
    kernel_size: int = spec(3, integer(1))
    downsample: str = spec("max", choice("max", "avg", "stride", "none"))
    batch_norm: bool = spec(True, boolean())
    activation: str = spec("relu", choice(*ACTIVATIONS))
    spatial_dropout: float = spec(0.0, _RATE)
    drop_block: float = spec(0.0, _RATE)
    block_size: int = spec(3, integer(1))
    pool: str = spec("avg", choice("avg", "max", "flatten"))
    hidden: int = spec(0, integer(0))
    dropout: float = spec(0.0, _RATE)

    def check(self, data: DataConfig, where: KeyPath) -> None:
        _, h, w = _image(data, where)
        if self.downsample != "none" and min(h, w) < 2 ** len(self.channels):
            raise fail(
                where("channels"),
                f"{len(self.channels)} downsampling blocks do not fit {h}×{w} images",
                list(self.channels),
            )

    @property
    def stochastic(self) -> bool:
        return bool(self.spatial_dropout or self.drop_block or self.dropout)

    def build(self, data: DataConfig) -> nn.Sequential:
        options: dict[str, Any] = {k: getattr(self, k) for k in self.keys()}
        return cnn(_image(data, "model"), data.dataset.classes, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ResNetModel(Table):
    """``[model] kind = "resnet"``: :func:`resnet`."""

    kind: ClassVar[str] = "resnet"
    stages: tuple[int, ...] = spec(
        (1, 1, 1), sequence_of(integer(1), what="a list of blocks per stage (ints >= 1)")
    )
    width: int = spec(16, integer(1))
    drop_path: float = spec(0.0, _RATE)
    dropout: float = spec(0.0, _RATE)

    def check(self, data: DataConfig, where: KeyPath) -> None:
        _, h, w = _image(data, where)
        if min(h, w) < 2 ** (len(self.stages) - 1):
            raise fail(
                where("stages"),
                f"{len(self.stages)} stages halve {h}×{w} images too often",
                list(self.stages),
            )

    @property
    def stochastic(self) -> bool:
        return bool(self.drop_path or self.dropout)

    def build(self, data: DataConfig) -> nn.Sequential:
        options: dict[str, Any] = {k: getattr(self, k) for k in self.keys()}
        return resnet(_image(data, "model"), data.dataset.classes, **options)  # type: ignore[arg-type]


CNN_KIND = register(
    Kind("cnn", CNNModel, "classifier", network=build_network, run=run_classifier, order=1)
)
RESNET_KIND = register(
    Kind("resnet", ResNetModel, "classifier", network=build_network, run=run_classifier, order=2)
)
