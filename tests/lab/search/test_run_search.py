"""``[search]`` through ``reglab run``: each method finds the known optimum of a tiny task,
pruned trials are stored PRUNED with their curve and never retried, coarse-to-fine records
its stages, and the chosen configuration is written as paste-ready text.

The tiny task: 300 digits, a 64-16-10 MLP, 3 epochs, an L2 coefficient in [1e-5, 10]. A
coefficient >= 1 keeps the network at chance (about 10%; measured: 0.1 gives ~20%), one
<= 1e-2 learns (60-80% validation accuracy), so the search must choose one below 0.1.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from reglab.cli.main import main
from reglab.lab import RunDir
from reglab.lab.settings.studyfile import StudyError, load_study, parse_study
from reglab.lab.sweep.pruning import objective_value
from reglab.lab.sweep.search import SearchSweep

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
epochs = {epochs}

[search]
{search}

[[grid]]
name = "L2"
rules."fc*".kernel = {{ class_name = "L2", config = {{ l2 = {{ log = [1e-5, 10.0] }} }} }}
"""
AXIS = "rules.fc*.kernel.l2"


def _write(tmp_path: Path, search: str, seeds: str = "[0]", epochs: int = 3) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(STUDY.format(search=search, seeds=seeds, epochs=epochs))
    return path


def _run(path: Path, out: Path, *more: str) -> int:
    return main(["run", str(path), "--out", str(out), "--no-progress", *more])


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = RunDir(out).storage_url
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


@pytest.mark.parametrize("method", ["tpe", "random", "qmc"])
def test_sampled_method_finds_the_known_optimum(tmp_path: Path, method: str) -> None:
    out = tmp_path / "run"
    path = _write(tmp_path, f'method = "{method}"\ntrials = 6\nseed = 1')
    assert _run(path, out) == 0
    trials = _trials(out)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6, [t.state for t in trials]
    values = [t.params[AXIS] for t in complete]
    assert all(1e-5 <= v <= 10.0 for v in values)
    assert len(set(values)) == 6
    best = max(complete, key=lambda t: t.value)
    assert best.params[AXIS] < 0.1, values
    assert best.value > 0.4  # a learning network, not chance
    # the objective is the last epoch's validation accuracy
    assert best.value == best.user_attrs["history"][-1]["val_acc"]
    # best.py / best.toml hold the chosen coefficient
    chosen = best.params[AXIS]
    assert f"penalties.L2(l2={chosen!r})" in (out / "best.py").read_text()
    assert f"l2 = {chosen!r}" in (out / "best.toml").read_text()


def test_sampled_search_is_seeded(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert _run(_write(tmp_path, 'method = "tpe"\ntrials = 3\nseed = 4', epochs=1), out) == 0
        runs.append([t.params[AXIS] for t in _trials(out)])
    assert runs[0] == runs[1]


def test_pruned_trials_keep_their_curve_and_are_never_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    path = _write(tmp_path, 'method = "random"\ntrials = 8\npruner = "asha"\nseed = 0', epochs=4)
    assert _run(path, out) == 0
    trials = _trials(out)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "ASHA pruned nothing: the test cannot show anything"
    for t in pruned:
        epochs = t.user_attrs["pruned_at"]
        assert epochs <= 4
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        assert len(t.user_attrs["history"]) == epochs  # training stopped there
        assert t.intermediate_values[epochs] == t.user_attrs["history"][-1]["val_acc"]
    assert any(t.user_attrs["pruned_at"] < 4 for t in pruned)  # epochs saved
    trained = sum(len(t.user_attrs["history"]) for t in trials)
    saved = f"pruned {len(pruned)} of 8 trials: {trained} of 32 epochs trained"
    assert saved in capsys.readouterr().out
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [1, 2, 3, 4]
    assert _run(path, out, "--resume", str(out)) == 2  # --out with --resume: refused
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert len(_trials(out)) == len(trials)  # nothing ran again


def test_a_trial_left_running_is_run_again_with_its_settings(tmp_path: Path) -> None:
    path = _write(tmp_path, 'method = "tpe"\ntrials = 2\nseed = 0', epochs=1)
    study = load_study(path)
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    sweep = SearchSweep.create(study, out.storage_url)
    killed = sweep._next()  # popped, then the process "dies"
    params = dict(killed.params) or {AXIS: killed.suggest_float(AXIS, 1e-5, 10.0, log=True)}
    again = SearchSweep.create(study, out.storage_url)
    assert again.recover_local() == 1
    again.work(out)
    trials = again.optuna.trials
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 2
    assert states.count(TrialState.FAIL) == 1
    copy = next(t for t in trials if t.number > killed.number and t.params == params)
    assert copy.state == TrialState.COMPLETE
    assert copy.user_attrs["seed"] == 0


def test_coarse_to_fine_stages_and_evidence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    path = _write(tmp_path, 'method = "coarse-to-fine"\npoints = 3', seeds="[0, 1]")
    assert _run(path, out) == 0
    trials = [t for t in _trials(out) if "placeholder" not in t.user_attrs]
    stage1 = sorted({t.params[AXIS] for t in trials if t.user_attrs["stage"] == 1})
    assert stage1 == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    by_value: dict[float, list[float]] = {}
    for t in trials:
        if t.user_attrs["stage"] == 1:
            by_value.setdefault(t.params[AXIS], []).append(t.value)
    assert all(len(v) == 2 for v in by_value.values())  # every value x every seed
    # each stage trained as one stack (7 values x 2 seeds), as a grid's points do
    assert {t.user_attrs["stacked"] for t in trials if t.user_attrs["stage"] == 1} == {14}
    best = max(stage1, key=lambda v: sum(by_value[v]) / 2)
    stage2 = sorted({t.params[AXIS] for t in trials if t.user_attrs["stage"] == 2})
    assert stage2, "no second stage"
    # stage 2 lies in the best decade's cell (widened by at most one neighbour)
    assert all(best / 10.0 <= v <= best * 10.0 for v in stage2), (best, stage2)
    assert not set(stage2) & set(stage1)
    printed = capsys.readouterr().out
    assert "stage 1: 7 points, 14 trials" in printed
    assert "stage 2:" in printed
    assert "l2 = " in printed
    assert "val_acc" in printed
    fragment = (out / "best.toml").read_text()
    # the fragment pasted into a study file parses as a grid entry
    study = load_study(path)
    pasted = parse_study(
        {**{k: v for k, v in study.source.items() if k not in ("grid", "search")}}
        | {"grid": [_toml(fragment)["grid"][0]]}
    )
    assert pasted.points[0].config.rules[0][1]["kernel"]["class_name"] == "L2"
    assert json.loads(json.dumps(pasted.points[0].params)) == {}


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


@pytest.mark.parametrize(
    ("search", "match"),
    [
        (
            'method = "coarse-to-fine"\npruner = "asha"',
            r"s\.search\.pruner: must be 'none' with method 'coarse-to-fine'",
        ),
        (
            'method = "tpe"\ntrials = 2\nobjectives = ["val_acc", "val_los"]',
            r"s\.search\.objectives: expected metric names from val_acc, .* \(got 'val_los'\)",
        ),
    ],
)
def test_what_reglab_run_cannot_search_is_a_one_line_error(
    tmp_path: Path, search: str, match: str
) -> None:
    with pytest.raises(StudyError, match=match):
        load_study(_write(tmp_path, search))


def test_a_search_needs_one_entry_and_a_validation_split(tmp_path: Path) -> None:
    path = _write(tmp_path, 'method = "tpe"\ntrials = 2')
    text = path.read_text()
    path.write_text(text + '\n[[grid]]\nname = "none"\n')
    with pytest.raises(StudyError, match=r"s\.grid: method 'tpe' searches one \[\[grid\]\] entry"):
        load_study(path)
    # a search chooses: without a validation split it gets the default one (settings.selection)
    path.write_text(text.replace("validation = 0.25\n", ""))
    entry = load_study(path).searched
    assert entry.point(entry.sample()).config.data.validation > 0
    path.write_text(text.replace("validation = 0.25\n", "validation = 0\n"))
    with pytest.raises(StudyError, match=r"s\.data\.validation: must be > 0"):
        load_study(path)
    path.write_text(text.replace("{ log = [1e-5, 10.0] }", "{ log = [1e-5, 10.0], bad = 1 }"))
    with pytest.raises(StudyError):
        load_study(path)


def test_objective_value_is_the_validation_metric() -> None:
    assert objective_value({"val_acc": 0.9, "val_loss": 0.3, "test_acc": 1.0}) == 0.9
    assert objective_value({"val_loss": 0.3}) == -0.3
    assert objective_value({"val_loss": float("nan")}) is None
    assert objective_value({"test_acc": 0.9}) is None


def test_parallel_workers_share_the_budget_without_repeating(tmp_path: Path) -> None:
    path = _write(tmp_path, 'method = "random"\ntrials = 6\nseed = 3', epochs=1)
    study = load_study(path)
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    SearchSweep.create(study, out.storage_url)
    workers = [SearchSweep.create(study, out.storage_url) for _ in range(2)]
    errors: list[BaseException] = []

    def work(sweep: SearchSweep) -> None:
        try:
            sweep.work(out, poll=0.1)
        except BaseException as err:  # pragma: no cover - shown by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    complete = [t for t in _trials(out.path) if t.state == TrialState.COMPLETE]
    assert 6 <= len(complete) <= 7  # two workers may both start the last one
    values = [t.params[AXIS] for t in complete]
    assert len(set(values)) == len(values), values


def test_report_rereads_a_search(tmp_path: Path) -> None:
    out = tmp_path / "run"
    path = _write(tmp_path, 'method = "tpe"\ntrials = 2\nseed = 0', epochs=1)
    assert _run(path, out) == 0
    (out / "summary.md").unlink()
    assert main(["report", str(out)]) == 0
    assert "L2 #0 l2=" in (out / "summary.md").read_text()


def test_a_coarse_to_fine_trial_lost_between_fail_and_requeue_runs_again(tmp_path: Path) -> None:
    path = _write(tmp_path, 'method = "coarse-to-fine"\npoints = 3', epochs=1)
    study = load_study(path)
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    sweep = SearchSweep.create(study, out.storage_url)
    lost = sweep._next()  # failed as interrupted, then the process died before re-queueing
    sweep.storage.set_trial_state_values(lost._trial_id, state=TrialState.FAIL)
    sweep._owned.clear()
    sweep.work(out, advance=True)
    trials = [t for t in sweep.optuna.trials if t.state == TrialState.COMPLETE]
    stage1 = sorted(t.params[AXIS] for t in trials if t.user_attrs["stage"] == 1)
    assert stage1 == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]  # each once
    assert any(t.user_attrs["stage"] == 2 for t in trials)
