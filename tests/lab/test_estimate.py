"""``reglab studies``' estimated time (issue 27, item 5): the cost model of a study file.

No timing is asserted here (the machine is shared): the work the model counts is checked
against the models themselves and for how it scales; the fitted constants are measured in
``docs/guide/lab.md`` ("How long a study takes")."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
from torch import nn

from reglab._optional import toml
from reglab.cli.estimate import Speed, format_duration, forward_macs, study_cost
from reglab.cli.studies import study_line
from reglab.lab import builtin_studies
from reglab.lab.kinds.convnets import cnn, resnet

SPEED = Speed(macs_per_second=2e10, step_seconds=1e-3)  # a fixed machine: no timing here


def _macs(model: nn.Module, image: tuple[int, int, int]) -> dict[str, float]:
    """Multiply-adds of one image through ``model``, counted from its layers' outputs."""
    counts = {"conv": 0.0, "dense": 0.0}

    def hook(module: nn.Module, _: object, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            counts["conv"] += out[0].numel() * module.in_channels * k
        elif isinstance(module, nn.Linear):
            counts["dense"] += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()(torch.zeros(1, math.prod(image)))  # the lab feeds flattened rows
    for h in handles:
        h.remove()
    return counts


@pytest.mark.parametrize(
    "model",
    [
        {
            "kind": "cnn",
            "channels": [16, 32],
            "downsample": "max",
            "pool": "flatten",
            "hidden": 128,
        },
        {"kind": "cnn", "channels": [8, 16, 32], "downsample": "stride", "kernel_size": 5},
        {"kind": "resnet", "stages": [1, 1], "width": 16},
        {"kind": "resnet", "stages": [2, 1, 1], "width": 8},
    ],
)
def test_convnet_macs_match_the_built_model(model: dict) -> None:
    image = (1, 28, 28)
    options = {k: v for k, v in model.items() if k != "kind"}
    built = (cnn if model["kind"] == "cnn" else resnet)(image, 10, **options)
    assert forward_macs(model, {"name": "mnist"}) == pytest.approx(_macs(built, image))


def test_mlp_macs_are_its_weights() -> None:
    sizes = [784, 512, 512, 10]
    net = nn.Sequential(*(nn.Linear(a, b) for a, b in itertools.pairwise(sizes)))
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))
    assert forward_macs({"sizes": sizes}, {"name": "mnist"}) == {"dense": weights}


def test_every_builtin_study_gets_an_estimate() -> None:
    for name, text in builtin_studies().items():
        line = study_line(text)
        assert line.cost is not None, name
        shown = format_duration(line.cost.seconds(SPEED))
        assert re.fullmatch(r"~\d+(\.\d)? (s|min|h|d)", shown), (name, shown)
        if line.search == "grid":  # one Work per trial: the listing's own count
            assert len(line.cost.trials) == line.trials, name


def _document(name: str) -> dict:
    return toml().loads(builtin_studies()[name])


@pytest.mark.parametrize("name", ["default", "dropout-maxnorm", "augmentation-cnn", "search-tpe"])
def test_work_scales_with_epochs_and_trials(name: str) -> None:
    base = study_cost(_document(name))
    assert base is not None
    doubled = _document(name)
    doubled["train"]["epochs"] *= 2
    for entry in doubled["grid"]:  # entries that set their own epochs
        if "epochs" in entry.get("train", {}):
            entry["train"]["epochs"] *= 2
    twice = study_cost(doubled)
    assert twice is not None
    assert twice.training_macs == pytest.approx(2 * base.training_macs)
    assert base.seconds(SPEED) < twice.seconds(SPEED) < 2 * base.seconds(SPEED)

    one_seed = study_cost(_document(name), seeds=1)
    assert one_seed is not None
    seeds = len(_document(name)["seeds"])
    assert len(base.trials) == seeds * len(one_seed.trials)
    assert base.training_macs == pytest.approx(seeds * one_seed.training_macs)
    # the --epochs override of reglab run: one epoch is less work than the study's
    assert study_cost(_document(name), epochs=1).training_macs < base.training_macs


def test_ensemble_members_and_extra_passes_add_work() -> None:
    bagging = study_cost(_document("bagging"), seeds=1)
    assert bagging is not None
    members = [w.macs["dense"] / bagging.trials[0].macs["dense"] for w in bagging.trials]
    assert members == [1, 2, 4, 8, 16]
    sam = _document("default")
    sam["grid"] = [{"name": "none"}, {"name": "sam", "train": {"optimizer": "sam"}}]
    plain, with_sam = study_cost(sam, seeds=1).trials  # type: ignore[union-attr]
    assert with_sam.macs["dense"] == 2 * plain.macs["dense"]


def test_what_the_file_does_not_say_is_unknown() -> None:
    factory = _document("default")
    factory["model"] = {"kind": "factory", "factory": "mypackage:build"}
    own_data = _document("default")
    own_data["data"] = {"format": "csv", "path": "rows.csv", "target": "y"}
    for document in (factory, own_data):
        assert study_cost(document) is None
    listed = study_line(
        'name = "mine"\n[model]\nkind = "factory"\nfactory = "pkg:build"\n[[grid]]\nname = "a"\n'
    )
    assert listed.cost is None
    assert format_duration(None) == "?"


def test_durations_read_as_rounded_units() -> None:
    shown = [format_duration(s) for s in (0.2, 3.33, 41, 359, 5400, 36000, 200000)]
    assert shown == ["~1 s", "~3.3 s", "~41 s", "~6 min", "~1.5 h", "~10 h", "~2 d"]
