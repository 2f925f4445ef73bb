"""Stacked search: K candidates asked together, told back, pruned member by member through a
real Optuna storage."""

from __future__ import annotations

import statistics

import optuna
from optuna.trial import TrialState

from reglab.lab.search import (
    ask_batch,
    find_axes,
    get_method,
    make_pruner,
    parse_search,
    report_members,
    tell_batch,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = find_axes({"l2": {"log": [1e-6, 1e-1]}, "kind": {"values": ["L1", "L2"]}})


def _study(tmp_path, pruner: str = "median") -> tuple[optuna.Study, str]:
    storage = f"sqlite:///{tmp_path / 'batch.db'}"
    settings = parse_search({"method": "random", "trials": 20, "pruner": pruner})
    study = optuna.create_study(
        study_name="s",
        storage=storage,
        direction="maximize",
        sampler=get_method("random").sampler(settings),
        pruner=make_pruner(settings.pruner, epochs=4),
    )
    return study, storage


def test_a_batch_is_k_distinct_running_trials_told_back(tmp_path):
    study, storage = _study(tmp_path)
    batch = ask_batch(study, SPACE, 5)
    assert len({c.trial.number for c in batch}) == 5
    assert len({c.params["l2"] for c in batch}) == 5
    assert all(c.params["kind"] in ("L1", "L2") for c in batch)
    running = optuna.load_study(study_name="s", storage=storage).get_trials(
        states=(TrialState.RUNNING,)
    )
    assert len(running) == 5
    finished = tell_batch(study, batch, [0.1, 0.2, None, 0.4, 0.5])
    states = [t.state for t in finished]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    stored = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.value for t in stored] == [0.1, 0.2, None, 0.4, 0.5]
    assert [t.params["l2"] for t in stored] == [c.params["l2"] for c in batch]


def test_members_are_pruned_against_the_median_as_optuna_defines_it(tmp_path):
    study, storage = _study(tmp_path)
    # five complete trials with curves 0.1·i + 0.05·epoch (i = 0..4), trained as one stack
    first = ask_batch(study, SPACE, 5)
    alive = [True] * 5
    for epoch in range(1, 5):
        alive = report_members(first, [0.1 * i + 0.05 * epoch for i in range(5)], epoch, alive)
    assert alive == [True] * 5  # the first 5 trials are the median pruner's start-up
    tell_batch(study, first, [0.1 * i + 0.2 for i in range(5)], alive)

    # a second stack of 4: members 0 and 2 fall below the median at epoch 2
    second = ask_batch(study, SPACE, 4)
    curves = {
        0: [0.30, 0.05, 0.06, 0.07],
        1: [0.30, 0.40, 0.45, 0.50],
        2: [0.30, 0.10, 0.11, 0.12],
        3: [0.30, 0.35, 0.40, 0.60],
    }
    alive, history = [True] * 4, []
    for epoch in range(1, 5):
        values = [curves[m][epoch - 1] for m in range(4)]
        before = list(alive)
        alive = report_members(second, values, epoch, alive)
        history.append(alive)
        # the reference: MedianPruner prunes a live trial whose best value so far is below
        # the median of the complete trials' values at this step
        median = statistics.median(0.1 * i + 0.05 * epoch for i in range(5))
        for m in range(4):
            best = max(curves[m][:epoch])
            expected = before[m] and best >= median
            assert alive[m] == expected, (epoch, m, best, median)
    assert history[0] == [True] * 4
    assert history[1] == [False, True, False, True]
    finished = tell_batch(study, second, [0.07, 0.5, 0.12, 0.6], alive)

    stored = optuna.load_study(study_name="s", storage=storage).trials[5:]
    assert [t.state for t in stored] == [
        TrialState.PRUNED,
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.COMPLETE,
    ]
    # a pruned member keeps its curve up to the epoch it was pruned at
    assert stored[0].intermediate_values == {1: 0.30, 2: 0.05}
    assert stored[1].intermediate_values == {1: 0.30, 2: 0.40, 3: 0.45, 4: 0.50}
    assert [t.state for t in finished] == [t.state for t in stored]


def test_asha_prunes_members_through_the_same_calls(tmp_path):
    study, _ = _study(tmp_path, pruner="asha")
    for _ in range(3):  # three stacks of 4, member m's curve (m + 1)·0.1·epoch
        batch = ask_batch(study, SPACE, 4)
        alive = [True] * 4
        for epoch in range(1, 5):
            alive = report_members(batch, [(m + 1) * 0.1 * epoch for m in range(4)], epoch, alive)
        tell_batch(study, batch, [(m + 1) * 0.4 for m in range(4)], alive)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states
    assert all(t.state == TrialState.COMPLETE for t in study.trials[:1])
    # the best member of every stack is never pruned
    assert all(study.trials[i].state == TrialState.COMPLETE for i in (3, 7, 11))
