"""Stacked search: ``[search] batch = K`` trains K sampled candidates as one stack, pruned
member by member. A pruned member stops costing compute (the stack is compacted), its curve
stops at its prune epoch, and the others train on unchanged — each member's curve is the one
it has trained alone, to the stacking tolerances of tests/lab/test_stacking.py."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

import reglab
from reglab.ensembles import ModelStack
from reglab.lab import RunDir, parse_study, run_trial
from reglab.lab.search import parse_search
from reglab.lab.settings.schema import StudyError
from reglab.lab.settings.studyfile import load_study
from reglab.lab.sweep.search import SearchSweep
from reglab.lab.work.compaction import MemberStopping, Stoppable
from reglab.lab.work.stacking import run_stacked
from reglab.lab.work.training import TrialContext
from reglab.penalties import L2
from reglab.training import Callback, fit

from .test_run_search import AXIS, _run, _trials, _write

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: as tests/lab/test_stacking.py: stacked members differ from lone trials by float rounding
ACCURACY_TOLERANCE = 0.011
RELATIVE_TOLERANCE = 0.02

STUDY = {
    "name": "stk",
    "seeds": [0, 1],
    "data": {"name": "digits", "subset": 400, "validation": 0.2},
    "model": {"sizes": [64, 32, 10]},
    "train": {"epochs": 5, "batch_size": 32},
    "grid": [
        {
            "name": "L2",
            "rules": {
                "fc*": {"kernel": {"class_name": "L2", "config": {"l2": {"values": [1e-4, 3e-2]}}}}
            },
        }
    ],
}


class _StopAfter(Callback):
    """Ends a lone trial after ``epochs`` epochs, as its pruner would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state) -> None:
        if state.epoch + 1 == self.epochs:
            state.stop = True


def test_pruned_members_stop_at_their_epoch_and_the_others_train_as_alone() -> None:
    study = parse_study(STUDY, "stk")
    members = [(t.point.config, t.seed) for t in study.trials]
    assert len(members) == 4
    stops = {1: 2, 3: 3}  # member -> the epoch its pruner stops it
    asked: list[tuple[int, list[int]]] = []

    def decide(step, rows):
        asked.append((step, sorted(rows)))
        return [m for m in rows if stops.get(m) == step]

    full = run_stacked(members)
    pruned = run_stacked(members, decide=decide)
    # only live members are asked about, every epoch
    assert asked == [(1, [0, 1, 2, 3]), (2, [0, 1, 2, 3]), (3, [0, 2, 3]), (4, [0, 2]), (5, [0, 2])]
    for m, (config, seed) in enumerate(members):
        epochs = stops.get(m, 5)
        together = pruned[m]
        assert len(together.history) == epochs
        assert together.metrics["epochs_run"] == epochs
        assert together.extra.get("stopped_at") == stops.get(m)
        # the stack without pruning: the same curve (compaction changes no live member)
        assert [r["val_loss"] for r in together.history] == pytest.approx(
            [r["val_loss"] for r in full[m].history[:epochs]], abs=1e-6
        )
        # trained alone, stopped where its pruner stopped it
        context = TrialContext(callbacks=(_StopAfter(epochs),))
        alone = run_trial(config, seed, context)
        assert [r["val_loss"] for r in together.history] == pytest.approx(
            [r["val_loss"] for r in alone.history], rel=RELATIVE_TOLERANCE
        )
        assert [r["val_acc"] for r in together.history] == pytest.approx(
            [r["val_acc"] for r in alone.history], abs=ACCURACY_TOLERANCE
        )
        for key in ("train_acc", "test_acc"):
            assert together.metrics[key] == pytest.approx(
                alone.metrics[key], abs=ACCURACY_TOLERANCE
            )
        assert together.metrics["weight_norm"] == pytest.approx(
            alone.metrics["weight_norm"], rel=RELATIVE_TOLERANCE
        )


class _Batches:
    """Per-member batches ``(b, K, F)`` / ``(b, K)`` of one shared dataset."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seeds: list[int]) -> None:
        self.x, self.y = x, y
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __iter__(self):
        orders = torch.stack([torch.randperm(len(self.x), generator=g) for g in self.generators])
        for rows in orders.split(16, dim=1):  # (K, b)
            yield self.x[rows].transpose(0, 1), self.y[rows].transpose(0, 1)


class _Sizes(Callback):
    """Records the stack's size, its weights' and Adam's moments' leading dimension at the
    start of every epoch: what each step computes on."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def on_epoch_begin(self, state) -> None:
        weight = state.model.stack.get_parameter("0.weight")
        moment = state.optimizer.state.get(weight, {}).get("exp_avg")
        self.seen.append(
            (state.model.stack.k, weight.shape[0], -1 if moment is None else len(moment))
        )


def _fit(decide, k: int = 4, epochs: int = 3):
    torch.manual_seed(0)
    x, y = torch.randn(96, 6), torch.randint(0, 3, (96,))
    coefficients = [1e-3, 1e-2, 1e-1, 1.0][:k]
    stack = ModelStack(lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), k=k)

    def attach(target, which):
        return reglab.attach(
            target, {"*": {"kernel": L2(torch.tensor([coefficients[i] for i in which]))}}
        )

    model, batches = Stoppable(stack), _Batches(x, y, list(range(k)))
    reg = attach(stack, range(k))
    stopping = MemberStopping(model, decide, attach, reg, batches)
    sizes = _Sizes()

    def loss(out, target):  # (K, b, C), (b, K) per member or (b,) shared
        targets = target.transpose(0, 1) if target.ndim == 2 else target.expand(out.shape[0], -1)
        return nn.functional.cross_entropy(out.flatten(0, 1), targets.flatten(), reduction="sum")

    fit(model, batches, (x, y), loss=loss, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
               epochs=epochs, regularization=[stopping.penalties], callbacks=[sizes, stopping],
               progress=False)  # fmt: skip
    return model, stopping, sizes


def test_a_pruned_member_stops_costing_compute() -> None:
    model, stopping, sizes = _fit(lambda step, rows: [1, 2] if step == 1 else [])
    # epoch 1 trains 4 members; after member 1 and 2 are pruned, the stack, its weights and
    # the optimizer's state hold the 2 live members only
    assert sizes.seen == [(4, 4, -1), (2, 2, 2), (2, 2, 2)]
    assert stopping.live == [0, 3]
    assert stopping.stopped_at == {1: 1, 2: 1}
    # the live members' weights are those they have in the stack that pruned none
    full, _, _ = _fit(lambda step, rows: [])
    kept = model.stack.state_dict()
    for name, tensor in full.stack.state_dict().items():
        assert torch.allclose(kept[name], tensor[[0, 3]], atol=1e-6), name


def test_every_member_pruned_ends_training() -> None:
    _, stopping, sizes = _fit(lambda step, rows: list(rows) if step == 2 else [])
    assert len(sizes.seen) == 2
    assert stopping.live == []
    assert stopping.stopped_at == {0: 2, 1: 2, 2: 2, 3: 2}


def test_a_stacked_search_stores_pruned_members_with_their_curves(tmp_path: Path) -> None:
    out = tmp_path / "run"
    search = 'method = "random"\ntrials = 8\nbatch = 4\npruner = "asha"\nseed = 0'
    path = _write(tmp_path, search, epochs=4)
    assert _run(path, out) == 0
    trials = _trials(out)
    assert len(trials) == 8
    # every candidate has one L2 axis: each batch of 4 trains as one stack of 4
    assert {t.user_attrs["stacked"] for t in trials} == {4}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "ASHA pruned nothing: the test cannot show anything"
    assert any(t.user_attrs["pruned_at"] < 4 for t in pruned)  # compute saved
    study = load_study(path)
    sweep = SearchSweep.open(study, RunDir(out).storage_url)
    for t in trials:
        history = t.user_attrs["history"]
        epochs = t.user_attrs.get("pruned_at", 4)
        assert len(history) == epochs
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        assert [t.intermediate_values[e + 1] for e in range(epochs)] == [
            row["val_acc"] for row in history
        ]
        assert (t.state == TrialState.PRUNED) == ("pruned_at" in t.user_attrs)
        # the same candidate trained alone has the same curve
        config = sweep.entry.point(t.params, "").config
        alone = run_trial(config, 0, TrialContext(callbacks=(_StopAfter(epochs),)))
        assert [r["val_loss"] for r in history] == pytest.approx(
            [r["val_loss"] for r in alone.history], rel=RELATIVE_TOLERANCE
        )
    # the report draws the pruned members and counts each one's share of its stack's time
    summary = (out / "summary.md").read_text()
    share = sum(
        (4 - len(t.user_attrs["history"]))
        * statistics.fmean(row["epoch_time"] / 4 for row in t.user_attrs["history"])
        for t in pruned
    )
    assert f"Pruned {len(pruned)} of 8 trials" in summary, summary
    assert f"(≈ {share:.1f} s" in summary, (share, summary)
    # a resume runs nothing again
    assert main_resume(out) == 0
    assert len(_trials(out)) == 8


def main_resume(out: Path) -> int:
    from reglab.cli.main import main

    return main(["run", "--resume", str(out), "--no-progress"])


def test_a_batch_left_running_is_run_again_with_its_settings(tmp_path: Path) -> None:
    path = _write(tmp_path, 'method = "tpe"\ntrials = 4\nbatch = 3\nseed = 0', epochs=1)
    study = load_study(path)
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    sweep = SearchSweep.create(study, out.storage_url)
    killed = [sweep._next() for _ in range(2)]  # popped, then the process "dies"
    params = [{AXIS: t.suggest_float(AXIS, 1e-5, 10.0, log=True)} for t in killed]
    again = SearchSweep.create(study, out.storage_url)
    assert again.recover_local() == 2
    again.work(out)
    trials = again.optuna.trials
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 4
    assert states.count(TrialState.FAIL) == 2
    copies = [t for t in trials if t.number > killed[-1].number and t.params in params]
    assert len(copies) == 2
    # the two put back and one new candidate train as one stack; the last one alone
    assert all(t.user_attrs["stacked"] == 3 for t in copies)
    assert sorted(t.user_attrs.get("stacked", 1) for t in trials if t.state == TrialState.COMPLETE) == [
        1, 3, 3, 3
    ]  # fmt: skip


def test_a_stack_with_a_diverging_member_trains_each_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, 'method = "random"\ntrials = 4\nbatch = 4\npruner = "asha"', epochs=2)
    path.write_text(path.read_text().replace("{ log = [1e-5, 10.0] }", "{ values = [1e-4, 1e38] }"))
    out = tmp_path / "run"
    assert _run(path, out) == 0
    trials = _trials(out)
    assert {t.params[AXIS] for t in trials} == {1e-4, 1e38}  # both in the one batch
    for t in trials:
        assert "stacked" not in t.user_attrs  # the stack diverged: every member alone
        if t.params[AXIS] == 1e38:
            assert t.state == TrialState.FAIL
            assert t.user_attrs["diverged"] == "penalty/fc0.kernel is inf at step 1 (epoch 1)"
        else:
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_batch_is_a_sampled_methods_key() -> None:
    assert parse_search({"method": "tpe", "trials": 4}).batch == 1
    assert parse_search({"method": "tpe", "trials": 4, "batch": 8}).batch == 8
    with pytest.raises(StudyError, match=r"search\.batch: only used by methods 'tpe'"):
        parse_search({"method": "coarse-to-fine", "batch": 4})
    with pytest.raises(StudyError, match=r"search\.batch: expected an int >= 1"):
        parse_search({"method": "tpe", "trials": 4, "batch": 0})
