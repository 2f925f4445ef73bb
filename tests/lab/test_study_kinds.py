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
subset = 500  # 400 train, 100 validation
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
    # ‖W‖₂ is a member's (mean over members), not all members' kernels together (≈ 2× at k=4)
    assert four["weight_norm"] == pytest.approx(one["weight_norm"], rel=0.25)
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
    assert [p.config.train.lr for p in points] == [1e-3, 1e-2]
    assert [p.label for p in points] == ["a lr=0.001", "a lr=0.01"]


LM = """
name = "lm"
seeds = [0]
[data]
name = "gutenberg"
subset = 3000
[model]
kind = "lstm-lm"
options = { emb_size = 16, hidden_size = 16, bptt = 20 }
[train]
epochs = 1
[[grid]]
name = "AR+TAR"
rules.drop_out = { activity = "l2", activity_reduction = "mean" }
rules.rnn1 = { activity = { class_name = "TemporalDifference", config = { coefficient = 1.0 } } }
"""

TEACHER = """
name = "ridge"
seeds = [0]
[data]
name = "teacher"
subset = 20
inputs = 30
[model]
kind = "linear"
[train]
optimizer = "sgd"
lr = 0.05
epochs = 400
batch_size = 20
[[grid]]
name = "bound"
norm_bound = { max_norm = 0.5 }
"""


def test_language_model_study_saves_tied_weights_once(tmp_path: Path) -> None:
    from safetensors import safe_open

    from reglab.data import DatasetNotFoundError, gutenberg

    try:
        gutenberg()
    except DatasetNotFoundError:
        pytest.skip("Gutenberg not fetched here (reglab data get gutenberg)")
    out, metrics = _run(tmp_path, LM, "lm")
    m = metrics["AR_TAR"]
    assert 1 < m["val_ppl"] < 30_000  # a few steps from a 10k-word uniform guess
    assert m["act_sq"] > 0
    assert m["act_diff_sq"] > 0
    with safe_open(str(out / "trials/AR_TAR__seed0/model.safetensors"), "pt") as f:
        stored = set(f.keys())
        assert "body.decoder.weight" not in stored  # tied: stored once
        assert "body.encoder.embedding.weight" in stored
        assert json.loads(f.metadata()["tied"]) == {
            "body.decoder.weight": "body.encoder.embedding.weight"
        }
    assert "val ppl" in (out / "summary.md").read_text()


def test_teacher_regression_study_reports_the_ridge_path(tmp_path: Path) -> None:
    out, metrics = _run(tmp_path, TEACHER, "ridge")
    m = metrics["bound"]
    assert m["weight_norm"] == pytest.approx(0.5, rel=0.02)
    assert m["ridge_gap"] < 0.02
    assert m["equiv_l2"] > 0
    assert (out / "report.html").is_file()
