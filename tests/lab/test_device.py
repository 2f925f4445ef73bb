"""``--device`` and ``[train] precision``: CPU stays the default and deterministic, a device
this machine lacks is a one-line exit-2 error before anything is written, reduced precision
trains through ``reglab.fit``; the CUDA tests run where torch sees a GPU and skip elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from reglab._validation import InvalidParameterError
from reglab.cli import main
from reglab.lab import parse_study, run_trial
from reglab.lab.work.device import DeviceError, parse_device, to_device
from reglab.lab.work.stacking import run_stacked
from reglab.lab.work.training import TrialContext
from reglab.training import fit

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

STUDY = {
    "name": "dev",
    "seeds": [0, 1],
    "data": {"name": "digits", "subset": 300, "validation": 0.2},
    "model": {"sizes": [64, 32, 10]},
    "train": {"epochs": 3, "batch_size": 32},
    "grid": [
        {"name": "none"},
        {"name": "L2", "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 1e-3}}}}},
    ],
}


def _study(**train: object) -> object:
    raw = json.loads(json.dumps(STUDY))
    raw["train"].update(train)
    return parse_study(raw)


def _toml(tmp_path: Path, **train: object) -> Path:
    lines = [
        'name = "dev"',
        "seeds = [0]",
        '[data]\nname = "digits"\nsubset = 200',
        "[model]\nsizes = [64, 16, 10]",
        "[train]\nepochs = 1",
        *(f"{k} = {json.dumps(v)}" for k, v in train.items()),
        '[[grid]]\nname = "none"',
    ]
    path = tmp_path / "dev.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- parsing the device ------------------------------------------------------------------
def test_parse_device_names() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(" CPU ") == torch.device("cpu")
    expected = (
        torch.device("cuda", 0)
        if torch.cuda.is_available()
        else torch.device("mps")
        if torch.backends.mps.is_available()
        else torch.device("cpu")
    )
    assert parse_device("auto") == expected


def test_parse_device_refuses_unknown_names() -> None:
    with pytest.raises(DeviceError, match=r"^'tpu' is not a device; use auto, cpu, cuda"):
        parse_device("tpu")
    with pytest.raises(DeviceError, match="is not a device"):
        parse_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_parse_device_refuses_missing_cuda() -> None:
    with pytest.raises(DeviceError, match=r"^cuda:1 is not available .*no CUDA device"):
        parse_device("cuda:1")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_parse_device_refuses_missing_mps() -> None:
    with pytest.raises(DeviceError, match=r"^mps is not available"):
        parse_device("mps")


def test_to_device_on_cpu_keeps_the_same_tensors() -> None:
    x, y = torch.randn(4, 3), torch.arange(4)
    moved = to_device((x, y), torch.device("cpu"))
    assert moved[0] is x
    assert moved[1] is y
    assert to_device(None, torch.device("cpu")) is None


# -- the CLI -----------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["run", "worker"])
def test_unavailable_device_is_an_exit_2_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = [command, "default", "--device", "cuda"]
    args += ["--out", str(out)] if command == "run" else ["--storage", "sqlite:///x.db"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"reglab {command}: error: argument --device: cuda is not available" in err
    assert not out.exists()


def test_bad_device_name_is_an_exit_2_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "default", "--device", "gpu0", "--out", str(tmp_path / "r")])
    assert exit_.value.code == 2
    assert "argument --device: 'gpu0' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_fp16_on_cpu_is_refused_before_the_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["run", str(_toml(tmp_path, precision="fp16")), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--device cpu: grid point 'none' has train.precision = 'fp16', which needs" in err
    assert not out.exists()


def test_fp16_with_sam_is_refused_before_the_run_directory(tmp_path: Path) -> None:
    from reglab.lab.work.device import check_study

    study = _study(precision="fp16", optimizer="sam")
    with pytest.raises(DeviceError, match=r"cannot be combined with optimizer = 'sam'"):
        check_study(study, torch.device("cuda"))  # checked without a GPU: no tensor is made


def _metrics(out: Path) -> dict[str, dict[str, float]]:
    trials = sorted((out / "trials").iterdir())
    return {t.name: json.loads((t / "metrics.json").read_text()) for t in trials}


def test_device_cpu_gives_the_default_results(tmp_path: Path) -> None:
    study = _toml(tmp_path)
    default, explicit = tmp_path / "a", tmp_path / "b"
    assert main(["run", str(study), "--out", str(default), "--no-progress"]) == 0
    assert (
        main(["run", str(study), "--out", str(explicit), "--no-progress", "--device", "cpu"]) == 0
    )
    a, b = _metrics(default), _metrics(explicit)
    assert a.keys() == b.keys()
    assert a
    for key in a:
        assert a[key].keys() == b[key].keys()
        assert "test_acc" in a[key]
        for metric in a[key].keys() - {"seconds"}:
            assert a[key][metric] == b[key][metric], (key, metric)
        # the weights, byte for byte (metadata sorted: reglab.lab.rundir), and as tensors
        files = [out / "trials" / key / "model.safetensors" for out in (default, explicit)]
        assert files[0].read_bytes() == files[1].read_bytes(), key
        first, second = (load_file(str(f)) for f in files)
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name]), (key, name)


# -- precision ---------------------------------------------------------------------------
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 8, generator=g), torch.randint(0, 3, (128,), generator=g)


def test_fit_bf16_on_cpu_runs_under_autocast() -> None:
    seen: list[torch.dtype] = []
    model = _net()
    model[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    x, y = _data()
    history = fit(
        model,
        (x, y),
        (x, y),
        loss=F.cross_entropy,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=2,
        progress=False,
        seed=0,
        precision="bf16",
    )
    assert seen
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert "val_loss" in history.epochs[-1]


def test_fit_bf16_trains_about_as_float32_does() -> None:
    x, y = _data()
    losses = {}
    for precision in ("32", "bf16"):
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        h = fit(model, (x, y), loss=F.cross_entropy, optimizer=opt, epochs=3, progress=False,
                seed=0, precision=precision)  # fmt: skip
        losses[precision] = h.epochs[-1]["loss"]
    assert losses["bf16"] == pytest.approx(losses["32"], rel=0.05), losses


def test_fit_refuses_fp16_on_cpu_and_unknown_precisions() -> None:
    x, y = _data()
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidParameterError, match="is 'fp16', which needs an accelerator"):
        fit(model, (x, y), loss=F.cross_entropy, optimizer=opt, epochs=1, precision="fp16")
    with pytest.raises(InvalidParameterError, match=r"must be one of '32', 'bf16', 'fp16'"):
        fit(model, (x, y), loss=F.cross_entropy, optimizer=opt, epochs=1, precision="16")


def test_train_precision_key() -> None:
    assert _study().points[0].config.train.precision == "32"
    assert _study(precision=32).points[0].config.train.precision == "32"
    assert _study(precision="bf16").points[0].config.train.precision == "bf16"
    with pytest.raises(ValueError, match=r"study\.train\.precision: expected '32', 'bf16' or"):
        _study(precision="fp8")


def test_bf16_trial_on_cpu() -> None:
    study = _study(precision="bf16", epochs=10, lr=3e-3)
    outcome = run_trial(study.points[1].config, 0)
    reference = run_trial(_study(epochs=10, lr=3e-3).points[1].config, 0)
    assert outcome.metrics["test_acc"] > 0.8
    assert outcome.metrics["test_acc"] == pytest.approx(reference.metrics["test_acc"], abs=0.05)
    assert next(outcome.model.parameters()).dtype == torch.float32


# -- CUDA (skipped without a GPU) -----------------------------------------------------------
@CUDA
def test_cuda_lone_trial_matches_cpu_closely_and_returns_to_cpu() -> None:
    config = _study().points[1].config
    on_cpu = run_trial(config, 0)
    on_gpu = run_trial(config, 0, TrialContext(device=torch.device("cuda")))
    assert next(on_gpu.model.parameters()).device.type == "cpu"
    assert on_gpu.metrics["test_acc"] == pytest.approx(on_cpu.metrics["test_acc"], abs=0.03)
    assert on_gpu.metrics["weight_norm"] == pytest.approx(on_cpu.metrics["weight_norm"], rel=1e-3)


@CUDA
def test_cuda_stacked_trials_match_lone_ones() -> None:
    study = _study()
    members = [(p.config, s) for p in study.points for s in study.seeds]
    context = TrialContext(device=torch.device("cuda"))
    stacked = run_stacked(members, context)
    for (config, seed), got in zip(members, stacked, strict=True):
        alone = run_trial(config, seed, context)
        assert got.metrics["test_acc"] == pytest.approx(alone.metrics["test_acc"], abs=0.02)
        assert next(got.model.parameters()).device.type == "cpu"


@CUDA
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_reduced_precision_trial(precision: str) -> None:
    config = _study(precision=precision).points[1].config
    outcome = run_trial(config, 0, TrialContext(device=torch.device("cuda")))
    assert 0.5 < outcome.metrics["test_acc"] <= 1.0


@CUDA
def test_cuda_fit_fp16_uses_a_grad_scaler() -> None:
    x, y = _data()
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, (x, y), loss=F.cross_entropy, optimizer=opt, epochs=3, progress=False,
                  device="cuda", precision="fp16")  # fmt: skip
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert next(model.parameters()).dtype == torch.float32


@CUDA
def test_cuda_run_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", str(_toml(tmp_path)), "--out", str(out), "--device", "cuda",
                 "--no-progress"]) == 0  # fmt: skip
    assert (out / "report.html").is_file()
