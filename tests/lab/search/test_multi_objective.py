"""Several ``[search] objectives`` through ``reglab run`` and ``reglab worker``: one Optuna
direction per objective, each trial told every metric, the Pareto front printed, written
(``best.py`` / ``best.toml``) and drawn; bad names are one-line errors; the model-statistic
objectives are measured on the weights.

The tiny task is ``test_run_search``'s (300 digits, a 64-16-10 MLP, an L2 coefficient in
[1e-5, 10]); its objectives, validation accuracy (higher is better) and the kernels' L2 norm
(lower is better), trade off: a larger coefficient shrinks the norm and, past ~1e-2, the
accuracy.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from optuna.trial import TrialState
from torch import nn

from reglab.lab import Overrides, RunDir, Sweep, find_study
from reglab.lab.metrics import OBJECTIVES
from reglab.lab.report.figures import axis_labels
from reglab.lab.report.pareto import pareto_figure, pareto_points
from reglab.lab.settings.studyfile import StudyError, load_study, parse_study
from reglab.lab.sweep.search import SearchSweep
from reglab.lab.work.classifier import classifier_metrics
from reglab.lab.work.training import kernel_stats
from reglab.losses.calibration import expected_calibration_error
from tests.lab.search.test_run_search import AXIS, _run, _trials, _write

TWO = 'objectives = ["val_acc", "weight_norm"]\n'
DIRECTIONS = ("maximize", "minimize")


def _dominates(a, b) -> bool:
    """By hand: ``a`` has no lower accuracy and no larger norm, and differs."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def _front_by_hand(trials) -> set[int]:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        t.number
        for t in complete
        if not any(_dominates(o.values, t.values) for o in complete if o is not t)
    }


def test_two_objective_search_stores_both_values_and_prints_the_front(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    path = _write(tmp_path, f'method = "tpe"\ntrials = 8\nseed = 1\n{TWO}', epochs=2)
    assert _run(path, out) == 0
    trials = _trials(out)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8, [t.state for t in trials]
    study = SearchSweep.open(load_study(path), RunDir(out).storage_url)
    assert [d.name.lower() for d in study.optuna.directions] == list(DIRECTIONS)
    assert study.optuna.metric_names == ["val_acc", "weight_norm"]
    for t in complete:  # both metrics, as measured (the norm not negated)
        assert len(t.values) == 2
        assert t.values == [
            t.user_attrs["metrics"]["val_acc"],
            t.user_attrs["metrics"]["weight_norm"],
        ]
    front = study.front()
    expected = _front_by_hand(trials)
    assert {p.number for p in front} == expected
    assert 2 <= len(expected) < 8  # a trade-off, and some trials dominated
    for p in front:
        assert p.values == tuple(trials[p.number].values)
        assert p.params[AXIS] == trials[p.number].params[AXIS]
    printed = capsys.readouterr().out
    assert (
        "Pareto front of val_acc (higher is better) and weight_norm (lower is better): " in printed
    )
    assert f"{len(front)} of 8 complete trials are not dominated" in printed
    assert "Chosen on val_acc" not in printed  # several objectives choose no one point
    # best.py: one attach call per front point; best.toml: one [[grid]] entry per point
    python = (out / "best.py").read_text()
    assert python.count("reglab.attach(model") == len(front)
    assert python.count("import reglab") == 1
    fragment = tomllib.loads((out / "best.toml").read_text())
    assert len(fragment["grid"]) == len(front)
    assert {e["rules"]["fc*"]["kernel"]["config"]["l2"] for e in fragment["grid"]} == {
        p.params[AXIS] for p in front
    }
    for p in front:
        assert f"penalties.L2(l2={p.params[AXIS]!r})" in python
    # the fragment is a grid of its own: pasted under the study's tables, it parses
    source = load_study(path).source
    pasted = parse_study(
        {k: v for k, v in source.items() if k not in ("grid", "search")} | fragment
    )
    assert len(pasted.points) == len(front)
    # the report draws the front
    html = (out / "report.html").read_text()
    assert (out / "pareto.png").exists()
    assert "Pareto front of val_acc, weight_norm: red points are not dominated" in html
    assert f"{len(front)} configurations form the Pareto front" in html


@pytest.mark.parametrize("method", ["random", "qmc"])
def test_random_and_qmc_search_several_objectives(tmp_path: Path, method: str) -> None:
    out = tmp_path / "run"
    objectives = 'objectives = ["val_acc", "val_ece", "model_size"]\n'
    path = _write(tmp_path, f'method = "{method}"\ntrials = 3\nseed = 2\n{objectives}', epochs=1)
    assert _run(path, out) == 0
    complete = [t for t in _trials(out) if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    for t in complete:
        metrics = t.user_attrs["metrics"]
        assert t.values == [metrics["val_acc"], metrics["val_ece"], 64 * 16 + 16 + 16 * 10 + 10]
    assert (out / "best.toml").exists()


def test_workers_share_a_multi_objective_search(tmp_path: Path) -> None:
    path = _write(tmp_path, f'method = "random"\ntrials = 4\nseed = 3\n{TWO}', epochs=1)
    study = load_study(path)
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    workers = [SearchSweep.create(study, out.storage_url) for _ in range(2)]
    threads = [threading.Thread(target=w.work, args=(out,), kwargs={"poll": 0.1}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    complete = [t for t in _trials(out.path) if t.state == TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5  # two workers may both start the last one
    assert all(len(t.values) == 2 for t in complete)
    assert {p.number for p in workers[0].front()} == _front_by_hand(_trials(out.path))


def test_a_multi_objective_trial_left_running_is_run_again(tmp_path: Path) -> None:
    path = _write(tmp_path, f'method = "tpe"\ntrials = 2\nseed = 0\n{TWO}', epochs=1)
    study = load_study(path)
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    killed = SearchSweep.create(study, out.storage_url)._next()  # popped; the process "dies"
    params = dict(killed.params) or {AXIS: killed.suggest_float(AXIS, 1e-5, 10.0, log=True)}
    again = SearchSweep.create(study, out.storage_url)
    assert again.recover_local() == 1
    again.work(out)
    trials = again.optuna.trials
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    copy = next(t for t in trials if t.number > killed.number and t.params == params)
    assert copy.state == TrialState.COMPLETE
    assert len(copy.values) == 2


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        (
            '["val_acc", "zeroes"]',
            r"^s\.search\.objectives: expected metric names from val_acc, val_loss, .*, "
            r"model_size \(got 'zeroes'\)$",
        ),
        (
            '["zeros", "weight_norm"]',
            r"^s\.search\.objectives: name a validation metric too \(val_acc, .*\) "
            r"\(got \['zeros', 'weight_norm'\]\)$",
        ),
        ('["val_acc", "test_acc"]', r"^s\.search\.objectives: test metrics never decide"),
    ],
)
def test_a_bad_objective_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, objectives: str, message: str
) -> None:
    path = _write(tmp_path, f'method = "tpe"\ntrials = 2\nobjectives = {objectives}')
    with pytest.raises(StudyError, match=message):
        load_study(path)
    assert _run(path, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_model_objectives_are_measured_on_the_weights_and_val_ece_on_validation() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        net[0].weight[:2] = 0.0  # 2 units x 6 inputs: 12 of the 30 + 15 kernel entries
    stats = kernel_stats(net)
    model_keys = {o.key for o in OBJECTIVES.values() if o.source == "model"}
    assert model_keys <= set(stats)
    assert stats["weight_zero_frac"] == pytest.approx(12 / 45)
    assert stats["param_count"] == 6 * 5 + 5 + 5 * 3 + 3
    assert OBJECTIVES["zeros"].key == "weight_zero_frac"
    # val_ece: the calibration error of the validation rows, whatever the test rows hold
    x = torch.randn(40, 6)
    y = torch.randint(0, 3, (40,))
    val, test = (x[:20], y[:20]), (x[20:], y[20:])
    metrics = classifier_metrics(net, (x, y), val, test, seed=0)
    probs = net.eval()(val[0]).softmax(-1)
    assert metrics["val_ece"] == pytest.approx(expected_calibration_error(probs, val[1]))
    shuffled = classifier_metrics(net, (x, y), val, (test[0], test[1].flip(0)), seed=0)
    for o in OBJECTIVES.values():
        if o.key in metrics:
            assert shuffled[o.key] == metrics[o.key], o.name


def test_report_front_is_the_non_dominated_records() -> None:
    acc, norm = OBJECTIVES["val_acc"], OBJECTIVES["weight_norm"]
    rows = [("a", 0.9, 3.0), ("b", 0.8, 2.0), ("c", 0.7, 2.5), ("d", 0.9, 3.5), ("e", 0.95, 9.0)]
    records = [{"label": lab, "metrics": {"val_acc": v, "weight_norm": w}} for lab, v, w in rows]
    records += [
        {"label": "pruned", "pruned": True, "metrics": {"val_acc": 1.0, "weight_norm": 0.1}},
        {"label": "nan", "metrics": {"val_acc": math.nan, "weight_norm": 0.1}},
    ]
    # a second seed of c: its mean (0.85, 2.25) is not dominated any more
    records += [{"label": "c", "point": "c", "metrics": {"val_acc": 1.0, "weight_norm": 2.0}}]
    records[2]["point"] = "c"
    grouped = pareto_points(records, [acc, norm])
    assert [p.label for p in grouped] == ["a", "b", "c", "d", "e"]
    assert grouped[2].values == pytest.approx((0.85, 2.25))
    assert {p.label for p in grouped if p.front} == {"a", "b", "c", "e"}
    records.pop()
    points = pareto_points(records, [acc, norm])
    assert [p.label for p in points] == ["a", "b", "c", "d", "e"]
    assert {p.label for p in points if p.front} == {"a", "b", "e"}  # c by b, d by a
    fig = pareto_figure(points, [acc, norm])
    assert axis_labels(fig) == [
        {
            "title": "Pareto front: val_acc vs weight_norm",
            "x": "validation accuracy (%), higher is better",
            "y": "kernel L2 norm, lower is better",
        }
    ]
    # the front numbered best-first on val_acc, each number's settings beside the plot
    assert [t.get_text() for t in fig.axes[0].texts] == ["1", "2", "3"]
    (listing,) = fig.texts
    assert listing.get_text().splitlines()[::2] == ["1. e", "2. a", "3. b"]
    assert listing.get_text().splitlines()[1] == "    val % 95.0, ‖W‖₂ 9.0"


def test_a_grid_with_several_objectives_prints_its_front_not_one_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _write(tmp_path, TWO, epochs=2)
    text = path.read_text().replace(
        "{ log = [1e-5, 10.0] }", "{ values = [1e-4, 1e-2, 1.0, 10.0] }"
    )
    path.write_text(text)
    out = tmp_path / "run"
    assert _run(path, out) == 0
    printed = capsys.readouterr().out
    assert "Chosen on" not in printed  # val_acc alone would ignore the norm
    run_dir = RunDir(out)
    records = Sweep.open(run_dir.study(), run_dir.storage_url, run_dir.optuna_study).results()
    front = [
        p
        for p in pareto_points(records, [OBJECTIVES["val_acc"], OBJECTIVES["weight_norm"]])
        if p.front
    ]
    assert f"{len(front)} configurations form the Pareto front" in " ".join(printed.split())
    for point in front:
        assert f"  {point.label}: val % " in printed
    # the largest coefficient has the smallest norm: always on the front
    assert any("l2=10" in p.label for p in front)


def test_search_pareto_trades_accuracy_for_exact_zeros(tmp_path: Path) -> None:
    """The built-in study, 3 epochs: a larger proximal L1 coefficient leaves more weights
    exactly 0 (rank correlation over all trials), and the front runs from a learning model
    with few zeros to one with many."""
    study, _, _ = find_study("search-pareto", Overrides(epochs=3))
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    sweep = SearchSweep.create(study, run_dir.storage_url)
    sweep.work(run_dir)
    text = sweep.conclude(run_dir)
    complete = [t for t in sweep.optuna.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 16
    l1 = [t.params["proximal_l1"] for t in complete]
    zeros = [t.values[1] for t in complete]
    rank = [sorted(l1).index(v) for v in l1], [sorted(zeros).index(v) for v in zeros]
    assert np.corrcoef(*rank)[0, 1] > 0.9, list(zip(l1, zeros, strict=True))
    front = sorted(sweep.front(), key=lambda p: -p.values[0])
    assert len(front) >= 3
    assert front[0].values[0] > 0.5  # the most accurate point learned
    assert front[0].values[1] < front[-1].values[1]
    assert front[-1].values[1] > 0.1, front[-1]  # the sparsest: many exact zeros
    assert "Pareto front of val_acc (higher is better) and zeros (higher is better)" in text
    assert (run_dir.path / "best.toml").read_text().count("[[grid]]") == len(front)
