"""CNN and ResNet study models: shapes on 8x8 and 28x28 inputs, the documented module names
(what rules address), stochastic depth's linear rule, parse-time errors, and a trial with
mixup, label smoothing and dropout under batch norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reglab.lab import StudyError, expand, parse_study, run_trial
from reglab.lab.kinds.convnets import PreActBlock, cnn, resnet
from reglab.stochastic import DropBlock, DropPath


@pytest.mark.parametrize("image", [(1, 8, 8), (1, 28, 28)])
def test_shapes(image: tuple[int, int, int]) -> None:
    x = torch.randn(3, image[1] * image[2])
    for downsample in ("max", "avg", "stride", "none"):
        for pool in ("avg", "max", "flatten"):
            net = cnn(image, 10, channels=[4, 8], downsample=downsample, pool=pool, hidden=6)
            assert net(x).shape == (3, 10), (downsample, pool)
    assert resnet(image, 10, stages=[1, 2, 1], width=4)(x).shape == (3, 10)


def test_module_names_are_the_documented_ones() -> None:
    net = cnn((1, 8, 8), 10, channels=[4, 8], spatial_dropout=0.1, drop_block=0.1, hidden=6,
              dropout=0.5)  # fmt: skip
    assert [n for n, _ in net.named_children()] == [
        "image", "conv0", "bn0", "act0", "pool0", "sdrop0", "dblock0",
        "conv1", "bn1", "act1", "pool1", "sdrop1", "dblock1",
        "gpool", "flat", "drop", "fc0", "act_fc", "fc1",
    ]  # fmt: skip
    assert isinstance(net.sdrop0, nn.Dropout2d)
    assert isinstance(net.dblock1, DropBlock)
    assert net.conv0.bias is None  # batch norm follows
    res = resnet((1, 8, 8), 10, stages=[2, 1], width=4, drop_path=0.3)
    names = dict(res.named_modules())
    assert isinstance(names["stage0.1"], PreActBlock)
    assert isinstance(names["stage1.0.shortcut"], nn.Conv2d)  # width and resolution change
    assert names["stage0.0"].shortcut is None
    # Stochastic depth rises linearly: 0 at the first block, drop_path at the last.
    rates = [m.p for m in res.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx([0.0, 0.15, 0.3])


BASE = {"name": "s", "seeds": [0], "data": {"name": "digits", "subset": 300}}


def _points(study: dict | None = None, **entry):
    return expand(parse_study({**BASE, **(study or {}), "grid": [{"name": "a", **entry}]}, "s"))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"kind": "cnn", "channels": [4, 4, 4, 4]},
            r"^s\.model\.channels: 4 downsampling blocks do not fit 8×8 images",
        ),
        (
            {"kind": "resnet", "stages": [1, 1, 1, 1, 1]},
            r"^s\.model\.stages: 5 stages halve 8×8 images too often",
        ),
    ],
)
def test_models_are_checked_against_the_images(model: dict, message: str) -> None:
    with pytest.raises(StudyError, match=message):
        _points({"model": model})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"model": {"kind": "cnn", "pool": "mean"}},
            r"^s\.grid\[0\]\.model\.pool: expected 'avg', 'max' or 'flatten'",
        ),
        (
            {"model": {"kind": "cnn"}, "mix": {"kind": "mixup"}, "multitask": {}},
            r"^s\.grid\[0\]\.mix: cannot be combined with multitask",
        ),
        (
            {"mix": {"kind": "cutmix"}, "label_smoothing": {"eps": 0.1, "form": "others"}},
            r"^s\.grid\[0\]\.mix: mixes uniformly smoothed labels",
        ),
        ({"mix": {"kind": "mixup", "alpha": 0}}, r"^s\.grid\[0\]\.mix\.alpha: must be a finite"),
        (
            {"model": {"kind": "cnn"}, "rules": {"fc9": {"kernel": "l2"}}},
            r"^s\.grid\[0\]\.rules: .*fc9",
        ),
    ],
)
def test_errors_name_their_key(entry: dict, message: str) -> None:
    with pytest.raises(StudyError, match=message):
        _points(**entry)


def test_a_cnn_trial_with_mixup_label_smoothing_dropout_and_conv_rules() -> None:
    (point,) = _points(
        {"data": {"name": "digits"}},
        model={"kind": "cnn", "channels": [8, 16], "dropout": 0.3, "hidden": 32},
        mix={"kind": "mixup", "alpha": 0.4},
        label_smoothing=0.1,
        rules={"conv*": {"kernel": {"class_name": "L2", "config": {"l2": 1e-4}}}},
        train={"epochs": 10},
    )
    outcome = run_trial(point.config, 0)
    metrics = outcome.metrics
    assert metrics["test_acc"] > 0.5
    assert 0.0 <= metrics["train_acc"] <= 1.0
    assert any(k.startswith("penalty") for k in outcome.history[0])
    # MC dropout varies the dropout masks only; batch norm keeps its running statistics, so
    # the stochastic average stays close to the deterministic network.
    assert abs(metrics["test_acc_mc"] - metrics["test_acc"]) < 0.05


def test_the_builders_name_a_bad_argument() -> None:
    from reglab import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"'downsample' parameter of cnn must be one"):
        cnn((1, 8, 8), 10, downsample="foo")
    with pytest.raises(InvalidParameterError, match=r"'dropout' parameter of cnn"):
        cnn((1, 8, 8), 10, dropout=1.5)
