"""Autoencoder and bagged-ensemble studies end to end, and study-level sweep axes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.lab import expand, parse_study
from reglab.lab.report import ensemble_curve, summarize

AE = """
name = "ae"
seeds = [0]
[data]
name = "digits"
subset = 400
[model]
kind = "autoencoder"
sizes = [64, 96]
sparsity = "l1"
coefficient = { values = [0.0, 0.05] }
[train]
epochs = 4
[[grid]]
name = "sae"
[[grid]]
name = "dae"
model.sparsity = "none"
model.corruption = "mask"
model.level = 0.25
model.coefficient = 0.0
"""

BAG = """
name = "bag"
seeds = [0]
[data]
name = "digits"
subset = 400
[model]
sizes = [64, 32, 10]
[train]
epochs = 4
[[grid]]
name = "bag"
ensemble = { members = { values = [1, 4] } }
"""


def _run(tmp_path: Path, text: str, name: str) -> tuple[Path, dict[str, dict[str, float]]]:
    study = tmp_path / f"{name}.toml"
    study.write_text(text)
    out = tmp_path / name
    assert main(["run", str(study), "--out", str(out), "--no-progress"]) == 0
    metrics = {
        p.parent.name.removesuffix("__seed0"): json.loads(p.read_text())
        for p in out.glob("trials/*/metrics.json")
    }
    return out, metrics


def test_autoencoder_study(tmp_path: Path) -> None:
    out, metrics = _run(tmp_path, AE, "ae")
    assert sorted(metrics) == ["dae", "sae_coefficient=0", "sae_coefficient=0.05"]
    assert metrics["sae_coefficient=0.05"]["l0"] < metrics["sae_coefficient=0"]["l0"]
    for name, m in metrics.items():
        assert m["test_recon"] > 0
        if name.startswith("sae"):  # the 4-epoch denoising AE is still far from converged
            assert 0 < m["fvu"] < 1
    pictures = sorted(p.name for p in out.glob("filters_*.png"))
    assert pictures == [
        "filters_dae.png",
        "filters_sae_coefficient=0.05.png",
        "filters_sae_coefficient=0.png",
    ]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(re.findall(r"<img ", html))
    assert "Encoder filters" in html


def test_bagging_study(tmp_path: Path) -> None:
    out, metrics = _run(tmp_path, BAG, "bag")
    one, four = metrics["bag_members=1"], metrics["bag_members=4"]
    assert (one["members"], four["members"]) == (1, 4)
    for m in (one, four):
        assert m["predicted_mse"] == pytest.approx(m["ensemble_mse"], rel=1e-9)
    assert four["ensemble_mse"] <= four["mean_member_mse"]
    assert (out / "ensemble.png").is_file()
    assert not (out / "learning_curves.png").exists()  # bagging logs no per-epoch history


def test_ensemble_curve_is_sorted_by_k() -> None:
    rows = summarize(
        [
            {
                "point": p,
                "label": p,
                "entry": "bag",
                "params": {},
                "seed": 0,
                "metrics": {
                    "members": k,
                    "ensemble_mse": e,
                    "predicted_mse": e,
                    "mean_member_mse": 0.5,
                    "test_acc": 0.9,
                    "mean_member_acc": 0.8,
                },
                "history": [],
            }
            for p, k, e in (("b", 4.0, 0.2), ("a", 1.0, 0.5))
        ]
    )
    curve = ensemble_curve(rows)
    assert curve["k"] == [1.0, 4.0]
    assert curve["ensemble_mse"] == [0.5, 0.2]


def test_axes_in_study_level_sections_are_swept() -> None:
    study = parse_study(
        {"name": "s", "train": {"lr": {"values": [1e-3, 1e-2]}}, "grid": [{"name": "a"}]}, "s"
    )
    points = expand(study)
    assert [p.config["train"]["lr"] for p in points] == [1e-3, 1e-2]
    assert [p.label for p in points] == ["a lr=0.001", "a lr=0.01"]
