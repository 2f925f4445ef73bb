"""``method = "pbt"`` through ``reglab run`` and ``reglab worker``: one trial per seed trains
the population as one stack, the worst members copy the best and perturb their coefficient,
and the members' schedules are stored and written as replayable text.

The tiny task is test_run_search's: 300 digits, a 64-16-10 MLP, an L2 coefficient in
[1e-5, 10]. A coefficient >= 1 keeps the network near chance, one <= 1e-2 learns; the seeded
population of 6 starts with two members at 0.76 and 3.0 (and four below 0.07); 8 epochs, exploit
and explore after epochs 2, 4 and 6."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from reglab._optional import toml
from reglab.cli.main import main
from reglab.lab import RunDir
from reglab.lab.settings.studyfile import StudyError, load_study, parse_study
from reglab.lab.work.runner import run_trial
from reglab.schedules import PiecewiseConstant
from tests.lab.search.test_run_search import _trials

STUDY = """
name = "s"
seeds = {seeds}

[data]
name = "digits"
subset = 300
validation = 0.25

[model]
sizes = [64, 16, 10]

[train]
optimizer = "adam"
lr = 0.01
batch_size = 32
epochs = 8
{train}
[search]
method = "pbt"
members = 6
interval = 2
{search}
[[grid]]
name = "L2"
rules."fc*".kernel = {{ class_name = "L2", config = {{ l2 = {axis} }} }}
{extra}
"""
AXIS = "rules.fc*.kernel.l2"


def _write(tmp_path: Path, seeds: str = "[0]", train: str = "", search: str = "", axis: str = "",
           extra: str = "") -> Path:  # fmt: skip
    path = tmp_path / "s.toml"
    axis = axis or "{ log = [1e-5, 10.0] }"
    path.write_text(STUDY.format(seeds=seeds, train=train, search=search, axis=axis, extra=extra))
    return path


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("pbt")
    path, out = _write(tmp), tmp / "run"
    code = main(["run", str(path), "--out", str(out), "--no-progress"])
    assert code == 0
    return path, out, (out / "best.py").read_text()


def test_pbt_replaces_the_members_that_cannot_learn(pbt_run) -> None:
    _, out, _ = pbt_run
    (trial,) = _trials(out)
    assert trial.state == TrialState.COMPLETE
    members = trial.user_attrs["members"]
    assert len(members) == 6
    initial = sorted(m["initial"][AXIS] for m in members)
    assert initial[-2:] == pytest.approx([0.758, 2.996], rel=1e-3)  # the seeded draws
    # every 2 epochs but the last (epochs 2, 4 and 6): the worst member copies the best
    steps = trial.user_attrs["steps"]
    assert [s["epoch"] for s in steps] == [2, 4, 6]
    assert all(len(s["copies"]) == 1 for s in steps)
    # the two members near chance were the ones replaced: nobody ends with l2 >= 0.5
    assert max(m["final"][AXIS] for m in members) < 0.5, [m["final"] for m in members]
    best = max(members, key=lambda m: m["value"])
    assert trial.user_attrs["best_member"] == best["member"]
    assert trial.value == best["value"] == best["metrics"]["val_acc"]  # chosen on validation
    assert best["final"][AXIS] < 0.1
    assert best["value"] > 0.5
    # a member's schedule is its lineage: it starts at some member's initial value
    for m in members:
        s = m["schedule"][AXIS]
        assert s["values"][0] in [x["initial"][AXIS] for x in members]
        assert s["values"][-1] == m["final"][AXIS]
        assert all(b in (2, 4, 6) for b in s["boundaries"])
    copied = {c[0] for s in steps for c in s["copies"]}
    for m in members:
        assert bool(m["schedule"][AXIS]["boundaries"]) == (m["member"] in copied)


def test_fraction_and_factors_set_how_many_are_replaced_and_how_far_they_move(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, search="fraction = 0.5\nfactors = [0.5, 2.0]")
    path.write_text(path.read_text().replace("epochs = 8", "epochs = 3"))  # one step, epoch 2
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    (trial,) = _trials(out)
    members = {m["member"]: m for m in trial.user_attrs["members"]}
    (step,) = trial.user_attrs["steps"]
    assert len(step["copies"]) == 3  # half of 6 (the default quarter: 1)
    for member, donor in step["copies"]:
        # the copy's lineage: the donor's initial value, then one explore factor times it
        before, after = members[member]["schedule"][AXIS]["values"]
        assert before == members[donor]["initial"][AXIS]
        assert after / before == pytest.approx(0.5) or after / before == pytest.approx(2.0)


def test_pbt_run_writes_the_schedules_and_the_report(pbt_run) -> None:
    _, out, best_py = pbt_run
    records = json.loads((out / "schedules.json").read_text())
    assert records["per"] == "epoch"
    assert len(records["members"]) == 6
    assert "PiecewiseConstant(boundaries=" in best_py
    for k in range(6):
        assert (out / "trials" / f"pbt_s0_m{k}" / "metrics.json").is_file()
    summary = (out / "summary.md").read_text()
    assert "schedules.png" in summary
    assert (out / "schedules.png").is_file()
    assert summary.count("Note: schedule l2, L2 pbt s0 m") == 6


def test_the_written_python_replays_the_schedule_on_one_model(pbt_run) -> None:
    """best.py, run on a lone model with reglab.fit, sets the recorded coefficient at every
    epoch (logged as schedule/<name> after each epoch: the value the next epoch trains with)."""
    from reglab.training import fit

    _, out, best_py = pbt_run
    (trial,) = _trials(out)
    schedule = trial.user_attrs["schedule"][AXIS]
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("fc0", torch.nn.Linear(4, 3))
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scope = {"model": model, "optimizer": optimizer, "train_loader": range(3)}
    exec(best_py, scope)  # the user's paste: attach, then reglab.schedule per coefficient
    history = fit(
        model,
        (x, y),
        optimizer=optimizer,
        epochs=8,
        batch_size=7,  # 3 steps per epoch, as train_loader says
        loss=torch.nn.functional.cross_entropy,
        regularization=[scope["regularization"]],
        callbacks=scope["schedules"],
        progress=False,
    )
    (column,) = [k for k in history.epochs[0] if k.startswith("schedule/")]
    logged = [row[column] for row in history.epochs]
    expected = PiecewiseConstant(**schedule)
    assert logged == pytest.approx([expected(e + 1) for e in range(8)])


def test_the_written_grid_entry_replays_the_schedule_in_the_lab(pbt_run) -> None:
    """best.toml pasted into the study trains one model with the member's coefficients."""
    path, out, _ = pbt_run
    (trial,) = _trials(out)
    fragment = toml().loads((out / "best.toml").read_text())["grid"][0]
    source = {k: v for k, v in load_study(path).source.items() if k not in ("grid", "search")}
    pasted = parse_study(source | {"grid": [fragment]})
    (point,) = pasted.points
    outcome = run_trial(point.config, 0)
    logged = [row["schedule/rules.fc*.kernel.l2"] for row in outcome.history]
    expected = PiecewiseConstant(**trial.user_attrs["schedule"][AXIS])
    assert logged == pytest.approx([expected(e + 1) for e in range(8)])


def test_pbt_through_reglab_worker_and_resume(tmp_path: Path) -> None:
    """Workers train the populations of the study's seeds; one population per seed, each
    once; a second worker and a later run find nothing left to train."""
    path = _write(tmp_path, seeds="[0, 1]", search="", train="")
    text = (
        path.read_text().replace("epochs = 8", "epochs = 2").replace("members = 6", "members = 2")
    )
    path.write_text(text)
    out = tmp_path / "run"
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    worker = ["worker", str(path), "--storage", storage, "--run-dir", str(out), "--no-progress"]
    assert main(worker) == 0
    assert main(worker) == 0  # nothing left: returns at once
    study = optuna.load_study(
        study_name=optuna.get_all_study_summaries(storage)[0].study_name, storage=storage
    )
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["seed"] for t in done) == [0, 1]
    assert len(study.trials) == 2
    assert all(len(t.user_attrs["members"]) == 2 for t in done)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"extra": "train.lr = { log = [1e-3, 1e-1] }"},
            r"s\.search\.method: 'pbt' perturbs penalty coefficients .* axis 'train\.lr'",
        ),
        (
            {"extra": "model.sizes = { values = [[64, 16, 10], [64, 32, 10]] }"},
            r"choice axis 'model\.sizes' must hold one value",
        ),
        (
            {"search": 'objectives = ["val_ece"]'},
            r"s\.search\.objectives: method 'pbt' ranks members on val_acc or val_loss",
        ),
        ({"axis": "1e-3"}, r"'pbt' perturbs coefficients"),
        ({"search": 'pruner = "asha"'}, r"s\.search\.pruner: must be 'none' with method 'pbt'"),
    ],
)
def test_what_pbt_cannot_search_is_a_one_line_error(tmp_path: Path, changes, match) -> None:
    with pytest.raises(StudyError, match=match):
        load_study(_write(tmp_path, **changes))


def test_an_entry_that_does_not_stack_is_refused_before_training(tmp_path, capsys) -> None:
    path = _write(tmp_path, extra="early_stopping = { patience = 2 }")
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "method 'pbt' trains its population as one stack" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before the run directory is written


def test_a_killed_population_trains_again_on_resume(tmp_path: Path) -> None:
    """A population left RUNNING by a killed run is failed and enqueued again (same seed), and
    trains once on resume; the study is then done."""
    from reglab.lab.settings.studyfile import load_study
    from reglab.lab.sweep.search import SearchSweep

    path = _write(tmp_path)
    path.write_text(path.read_text().replace("epochs = 8", "epochs = 2").replace(
        "members = 6", "members = 2"))  # fmt: skip
    study = load_study(path)
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    killed = SearchSweep.create(study, run_dir.storage_url)
    assert killed._next() is not None  # RUNNING, then the process "dies"
    resumed = SearchSweep.create(study, run_dir.storage_url)
    assert resumed.recover_local() == 1
    assert not resumed.done()
    resumed.work(run_dir, advance=True)
    assert resumed.done()
    states = sorted(t.state.name for t in resumed.optuna.trials)
    assert states == ["COMPLETE", "FAIL"]
    (done,) = [t for t in resumed.optuna.trials if t.state == TrialState.COMPLETE]
    assert done.user_attrs["seed"] == 0
    assert len(resumed.results()) == 2  # one record per member


def test_a_diverged_population_is_final_and_reported(tmp_path: Path, capsys) -> None:
    """SGD at lr 1e3 makes the loss or penalty non-finite: the trial is FAIL with the reason, one record."""
    path = _write(tmp_path)
    text = path.read_text().replace('optimizer = "adam"', 'optimizer = "sgd"')
    path.write_text(text.replace("lr = 0.01", "lr = 1e3").replace("members = 6", "members = 2"))
    out = tmp_path / "run"
    main(["run", str(path), "--out", str(out), "--no-progress"])
    (trial,) = _trials(out)
    assert trial.state == TrialState.FAIL
    assert "of a stack of 2" in trial.user_attrs["diverged"]  # nan or inf, and where
    printed = capsys.readouterr().out
    assert "no population finished: nothing to choose" in printed
    assert "1 diverged" in printed
    assert (out / "trials" / "pbt_s0" / "diverged.json").is_file()
