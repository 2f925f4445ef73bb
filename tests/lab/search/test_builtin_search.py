"""Effect tests of the built-in search studies (digits, fewer epochs and seeds): each chooses
a coefficient the literature calls good, not the one that underfits, and shows its method's
mechanics (coarse-to-fine's decades then a finer grid; TPE's pruned trials; PBT's copies
and replayable schedule)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from reglab.lab import Overrides, RunDir, find_study
from reglab.lab.sweep.search import SearchSweep

L2 = "rules.fc*.kernel.l2"


def _search(name: str, tmp_path: Path, epochs: int, seeds: int) -> SearchSweep:
    study, _, _ = find_study(name, Overrides(epochs=epochs, seeds=seeds))
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    sweep = SearchSweep.create(study, run_dir.storage_url)
    sweep.work(run_dir, advance=True)
    sweep.conclude(run_dir)
    return sweep


def test_search_coarse_to_fine_refines_inside_the_best_decade(tmp_path: Path) -> None:
    sweep = _search("search-coarse-to-fine", tmp_path, epochs=4, seeds=1)
    trials = [t for t in sweep.optuna.trials if "stage" in t.user_attrs]
    stage1 = {t.params[L2]: t.value for t in trials if t.user_attrs["stage"] == 1}
    assert sorted(stage1) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert max(stage1.values()) > stage1[1e-1] + 0.05  # the strongest penalty underfits
    stage2 = sorted(t.params[L2] for t in trials if t.user_attrs["stage"] == 2)
    best1 = max(stage1, key=stage1.get)
    assert stage2
    assert all(best1 / 10 <= v <= best1 * 10 for v in stage2), (best1, stage2)
    params, _ = sweep.best()
    assert params[L2] <= 1e-2
    assert (tmp_path / "run" / "best.py").read_text().count("penalties.L2(l2=") == 1


def test_search_tpe_prunes_lagging_trials_and_chooses_a_good_coefficient(tmp_path: Path) -> None:
    sweep = _search("search-tpe", tmp_path, epochs=4, seeds=1)
    trials = sweep.optuna.trials
    assert len(trials) == 24
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned
    assert any(t.user_attrs["pruned_at"] < 4 for t in pruned)
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best.params[L2] < 1e-2, best.params
    assert best.value > 0.85, best.value
    assert "reglab.attach(model" in (tmp_path / "run" / "best.py").read_text()


def test_show_describes_a_searched_study(capsys) -> None:
    from reglab.cli.main import main

    assert main(["show", "search-tpe", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["search"]["method"] == "tpe"
    assert [a["axis"] for a in shown["axes"]] == ["train.lr", L2]
    assert main(["studies"]) == 0
    assert "coarse-to-fine x3" in capsys.readouterr().out


def test_a_searched_factory_must_be_trusted_before_anything_runs(tmp_path: Path) -> None:
    """A factory offered by a search axis is checked like a grid's: every choice."""
    from reglab.cli.main import main
    from reglab.lab import Trust, UntrustedCode
    from reglab.lab.settings.studyfile import load_study

    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\nseeds = [0]\n[data]\nsubset = 100\nvalidation = 0.2\n'
        '[model]\nkind = "factory"\n[train]\nepochs = 1\n'
        '[search]\nmethod = "random"\ntrials = 2\n'
        '[[grid]]\nname = "a"\nmodel.factory = { values = ["torch.nn:Identity", '
        '"reglab_no_such_module:make"] }\ntrain.lr = { log = [1e-3, 1e-1] }\n'
    )
    study = load_study(path)
    factories = {p.config.model.factory for p in study.example_points}
    assert factories == {"torch.nn:Identity", "reglab_no_such_module:make"}
    with pytest.raises(UntrustedCode, match="reglab_no_such_module:make"):
        Trust.of(["torch"]).check(study)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert not (tmp_path / "run").exists()


def test_search_pbt_best_member_beats_the_worst_initial_member_and_its_schedule_replays(
    tmp_path: Path,
) -> None:
    """search-pbt, 9 epochs (exploit/explore after epochs 3 and 6): the population's best
    member is at least as good on validation as the worst initial member (the strongest
    penalty) trained alone for the same epochs, and the written grid entry replays the best
    member's coefficient schedule on one model."""
    from reglab._optional import toml
    from reglab.lab.settings.studyfile import parse_study
    from reglab.lab.work.runner import run_trial
    from reglab.schedules import PiecewiseConstant

    sweep = _search("search-pbt", tmp_path, epochs=9, seeds=1)
    (trial,) = sweep.optuna.trials
    assert trial.state == TrialState.COMPLETE
    members = trial.user_attrs["members"]
    assert len(members) == 8
    assert [s["epoch"] for s in trial.user_attrs["steps"]] == [3, 6]
    worst = max(members, key=lambda m: m["initial"][L2])  # the strongest initial penalty
    alone = run_trial(sweep.entry.point(worst["initial"]).config, worst["seed"])
    assert trial.value >= alone.metrics["val_acc"], (trial.value, alone.metrics["val_acc"])
    assert trial.value > 0.85, trial.value
    # the written entry, pasted into the study, trains one model along the best's schedule
    fragment = toml().loads((tmp_path / "run" / "best.toml").read_text())["grid"][0]
    source = {k: v for k, v in sweep.study.source.items() if k not in ("grid", "search")}
    (point,) = parse_study(source | {"grid": [fragment]}).points
    replayed = run_trial(point.config, 0)
    logged = [row["schedule/rules.fc*.kernel.l2"] for row in replayed.history]
    expected = PiecewiseConstant(**trial.user_attrs["schedule"][L2])
    assert logged == pytest.approx([expected(e + 1) for e in range(9)])
    assert "reglab.schedule(rules['fc*']['kernel']" in (tmp_path / "run" / "best.py").read_text()
