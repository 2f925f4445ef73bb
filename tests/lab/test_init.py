"""``[train] init``: trials start from a safetensors file, a trial folder of an earlier run or
another grid entry's trained weights; every mismatch is a parse-time error naming the key,
before a run directory exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from reglab.cli import main
from reglab.lab import find_study, parse_study, run_trial
from reglab.lab.settings.init import file_shapes
from reglab.lab.settings.schema import StudyError
from reglab.lab.settings.studyfile import load_study
from reglab.lab.work.init import load_init
from reglab.lab.work.stacking import run_stacked, stack_key

SIZES = [64, 32, 10]


def _toml(folder: Path, init: str = "", *, sizes: list[int] = SIZES, lr: float = 1e-3) -> Path:
    text = f"""
name = "warm"
seeds = [0]
[data]
name = "digits"
subset = 300
[model]
sizes = {json.dumps(sizes)}
[train]
optimizer = "sgd"
lr = {lr}
epochs = 1
batch_size = 64
{f'init = "{init}"' if init else ""}
[[grid]]
name = "only"
"""
    path = folder / "warm.toml"
    path.write_text(text)
    return path


def _weights(folder: Path, sizes: list[int] = SIZES, seed: int = 123) -> dict[str, torch.Tensor]:
    """A network of ``sizes`` initialised under ``seed``, saved as ``w.safetensors``."""
    study = load_study(_toml(folder, sizes=sizes))
    torch.manual_seed(seed)
    net = study.points[0].config.network()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / "w.safetensors"))
    return state


def test_init_from_a_file_relative_to_the_study(tmp_path: Path) -> None:
    state = _weights(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    study = load_study(_toml(tmp_path, "w.safetensors"))  # relative to the study file's folder
    config = study.points[0].config
    assert Path(config.train.init) == (tmp_path / "w.safetensors").resolve()
    torch.manual_seed(0)
    net = config.network()
    assert not torch.equal(net.state_dict()["fc0.weight"], state["fc0.weight"])
    load_init(config, 0, net)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_a_trial_starts_from_the_file(tmp_path: Path) -> None:
    """With a learning rate of 1e-12 one epoch leaves the weights where they started: the
    file's, not the seed's initialisation."""
    state = _weights(tmp_path)
    config = load_study(_toml(tmp_path, "w.safetensors", lr=1e-12)).points[0].config
    trained = run_trial(config, 0).model.state_dict()
    for name, tensor in state.items():
        torch.testing.assert_close(trained[name], tensor, rtol=0, atol=1e-9)
    plain = run_trial(load_study(_toml(tmp_path, lr=1e-12)).points[0].config, 0)
    assert not torch.allclose(plain.model.state_dict()["fc0.weight"], state["fc0.weight"])


def test_mismatched_shapes_are_a_parse_time_error_naming_the_key(tmp_path: Path) -> None:
    _weights(tmp_path, sizes=[64, 16, 10])
    with pytest.raises(
        StudyError,
        match=r"^warm\.train\.init: fc0\.weight is \(16, 64\) in w\.safetensors, the model's "
        r"is \(32, 64\) \(got '/.*w\.safetensors'\)$",
    ):
        load_study(_toml(tmp_path, "w.safetensors"))


def test_missing_and_extra_tensors_are_named(tmp_path: Path) -> None:
    state = _weights(tmp_path)
    save_file({k: v for k, v in state.items() if k != "fc1.bias"}, str(tmp_path / "w.safetensors"))
    with pytest.raises(StudyError, match=r"w\.safetensors has no fc1\.bias"):
        load_study(_toml(tmp_path, "w.safetensors"))
    save_file({**state, "extra": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(StudyError, match=r"w\.safetensors has extra, which the model has not"):
        load_study(_toml(tmp_path, "w.safetensors"))


def test_a_pickle_is_not_read(tmp_path: Path) -> None:
    torch.save({"fc0.weight": torch.zeros(32, 64)}, tmp_path / "w.safetensors")
    with pytest.raises(StudyError, match=r"train\.init: .*not a readable safetensors file"):
        load_study(_toml(tmp_path, "w.safetensors"))


def test_a_missing_file_names_what_init_accepts(tmp_path: Path) -> None:
    with pytest.raises(
        StudyError,
        match=r"warm\.train\.init: expected a \.safetensors file, a trial folder of an earlier "
        r"run or the name of a grid entry \(only\); no such file",
    ):
        load_study(_toml(tmp_path, "nope.safetensors"))


def test_cli_mismatch_exits_2_without_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _weights(tmp_path, sizes=[64, 16, 10])
    out = tmp_path / "run"
    assert main(["run", str(_toml(tmp_path, "w.safetensors")), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "reglab run: error: warm.train.init: fc0.weight is (16, 64)" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_init_from_a_trial_folder_of_an_earlier_run(tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert main(["run", str(_toml(tmp_path)), "--out", str(first), "--no-progress"]) == 0
    folder = first / "trials" / "only__seed0"
    saved = file_shapes(folder / "model.safetensors")
    config = load_study(_toml(tmp_path, str(folder))).points[0].config
    torch.manual_seed(5)
    net = config.network()
    load_init(config, 0, net)
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    assert set(saved) == set(net.state_dict())
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, stored[name]), name


# -- a grid entry's trained weights (the two-phase study) -------------------------------
def _two_phase(**phase2: object) -> dict[str, object]:
    return {
        "name": "two",
        "seeds": [0, 1],
        "data": {"name": "digits", "subset": 300},
        "model": {"sizes": SIZES},
        "train": {"epochs": 3, "batch_size": 64},
        "grid": [
            {"name": "first"},
            {"name": "tiny", "train": {"init": "first", "optimizer": "sgd", "lr": 1e-12}},
            {
                "name": "L2",
                "train": {"init": "first", **phase2},
                "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 1e-2}}}},
            },
        ],
    }


def test_phase_two_starts_from_the_entry_of_the_same_seed() -> None:
    study = parse_study(_two_phase())
    first, tiny, _ = study.points
    for seed in (0, 1):
        start = run_trial(first.config, seed).model.state_dict()
        after = run_trial(tiny.config, seed).model.state_dict()
        for name, tensor in start.items():
            torch.testing.assert_close(after[name], tensor, rtol=0, atol=1e-9)
    assert not torch.equal(
        run_trial(first.config, 0).model.state_dict()["fc0.weight"],
        run_trial(first.config, 1).model.state_dict()["fc0.weight"],
    )


def test_phase_one_trains_alone_and_phase_two_stacks_like_lone_trials() -> None:
    study = parse_study(_two_phase(optimizer="sgd", lr=1e-12))
    first, tiny, l2 = study.points
    assert stack_key(first.config) is None  # others start from it: trained alone, exactly
    assert stack_key(tiny.config) == stack_key(l2.config) is not None
    stacked = run_stacked([(tiny.config, 0), (l2.config, 0)])
    start = run_trial(first.config, 0).model.state_dict()
    for outcome in stacked:
        for name, tensor in outcome.model.state_dict().items():
            torch.testing.assert_close(tensor, start[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"init": "tiny"}, r"grid entry 'tiny' starts from init itself; no chains"),
        ({"init": "L2"}, r"a grid entry cannot start from its own trials"),
    ],
)
def test_entry_reference_errors(change: dict[str, str], message: str) -> None:
    raw = _two_phase()
    raw["grid"][2]["train"].update(change)  # type: ignore[index]
    with pytest.raises(StudyError, match=rf"^study\.grid\[2\]\.train\.init: {message}"):
        parse_study(raw)


def test_entry_of_another_network_is_refused() -> None:
    raw = _two_phase()
    raw["grid"][2]["model"] = {"sizes": [64, 16, 10]}  # type: ignore[index]
    with pytest.raises(
        StudyError, match=r"grid entry 'first' builds another network: fc0\.weight is \(32, 64\)"
    ):
        parse_study(raw)


def test_builtin_two_phase_study_parses() -> None:
    study, _, _ = find_study("regularize-trained")
    entries = {p.entry: p.config.train.init for p in study.points}
    assert entries["unregularized"] == ""
    assert {v for k, v in entries.items() if k != "unregularized"} == {"unregularized"}
