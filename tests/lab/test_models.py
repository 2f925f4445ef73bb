"""The study model builder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reglab import InvalidParameterError
from reglab.lab import Trust, UntrustedCode, expand, find_study, mlp, run_trial


def test_mlp_layout_and_dropout() -> None:
    model = mlp([4, 8, 8, 2], dropout=0.5, input_dropout=0.2)
    assert [n for n, _ in model.named_children()] == [
        "drop_in",
        "fc0",
        "act0",
        "drop0",
        "fc1",
        "act1",
        "drop1",
        "fc2",
    ]
    assert model.drop0.p == 0.5
    assert model.drop_in.p == 0.2
    assert [n for n, _ in mlp([4, 8, 2]).named_children()] == ["fc0", "act0", "fc1"]
    x = torch.ones(64, 4)
    assert not torch.equal(model(x), model(x))  # dropout active in training mode
    model.eval()
    assert torch.equal(model(x), model(x))
    with pytest.raises(
        InvalidParameterError,
        match=r"'dropout' parameter of mlp must be a float in \[0, 1\)\. Got 1\.5",
    ):
        mlp([4, 2], dropout=1.5)
    with pytest.raises(
        InvalidParameterError, match=r"'activation' parameter of mlp must be one of"
    ):
        mlp([4, 2], activation="swish")
    assert isinstance(mlp([4, 3, 2], activation="tanh").act0, nn.Tanh)


def test_grid_settings_reach_the_trained_model(tmp_path) -> None:
    study = tmp_path / "s.toml"
    study.write_text("""
name = "s"
seeds = [0]
[data]
name = "digits"
subset = 200
[model]
sizes = [64, 16, 10]
[train]
epochs = 2
[[grid]]
name = "d"
model.dropout = { values = [0.1, 0.6] }
""")
    parsed, _, _ = find_study(str(study))
    a, b = (run_trial(p.config, 0) for p in expand(parsed))
    assert isinstance(a.model.drop0, nn.Dropout)
    assert (a.model.drop0.p, b.model.drop0.p) == (0.1, 0.6)
    assert a.metrics["train_loss"] != b.metrics["train_loss"]


def make_small_net(
    features: int, classes: int, image_shape: tuple[int, int, int] | None, hidden: int = 8
) -> nn.Module:
    """A user model factory, referenced from a study file by its dotted path: called with the
    data's features, classes and image shape, and the study's options."""
    assert image_shape == (1, 8, 8)  # digits are 8×8 grayscale images
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def test_factory_model_kind(tmp_path) -> None:
    study = tmp_path / "f.toml"
    study.write_text("""
name = "f"
seeds = [0]
[data]
name = "digits"
subset = 100
[model]
kind = "factory"
factory = "tests.lab.test_models:make_small_net"
options = { hidden = 5 }
[train]
epochs = 1
[[grid]]
name = "x"
""")
    parsed, _, _ = find_study(str(study))
    (point,) = expand(parsed)
    with pytest.raises(UntrustedCode, match=r"--trust-factory tests\.lab\.test_models"):
        run_trial(point.config, 0)
    with Trust(("tests.lab",)).active():
        outcome = run_trial(point.config, 0)
    assert outcome.model[0].out_features == 5
    bad = tmp_path / "g.toml"
    bad.write_text(
        'name = "g"\n[model]\nkind = "factory"\nfactory = "nodots"\n[[grid]]\nname = "x"\n'
    )
    with pytest.raises(
        InvalidParameterError, match=r"g\.model\.factory: expected 'package\.module:function'"
    ):
        find_study(str(bad))


def test_unimportable_factory_is_a_one_line_user_error(tmp_path) -> None:
    import subprocess
    import sys

    study = tmp_path / "h.toml"
    study.write_text(
        'name = "h"\nseeds = [0]\n[model]\nkind = "factory"\n'
        'factory = "no_such_module:make"\n[train]\nepochs = 1\n[[grid]]\nname = "x"\n'
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglab",
            "run",
            str(study),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--trust-factory",
            "no_such_module",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "model.factory: cannot import 'no_such_module:make'" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
