"""One test per private torch / Optuna internal reglab reaches (src/reglab/_internals/): each
fails here, naming the internal, when an upgrade moves or changes it."""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint

from reglab._internals.torch import (
    current_autograd_node,
    saved_tensors_hooks_active,
    unwrapped_step,
)


def test_current_autograd_node_is_none_outside_backward_and_the_node_inside() -> None:
    assert hasattr(torch._C, "_current_autograd_node"), "torch._C._current_autograd_node moved"
    assert current_autograd_node() is None
    seen = []
    x = torch.ones(3, requires_grad=True)
    y = x.exp()
    y.register_hook(lambda g: seen.append(current_autograd_node().name()) or g)
    y.sum().backward()
    # a tensor hook on y runs as the node that consumes y's gradient starts: exp's backward
    assert seen == ["ExpBackward0"]
    assert current_autograd_node() is None


def test_saved_tensors_hooks_active_inside_checkpointing_and_offloading_only() -> None:
    assert hasattr(torch._C._autograd, "_top_saved_tensors_default_hooks"), "moved"
    assert not saved_tensors_hooks_active()
    with torch.autograd.graph.save_on_cpu():
        assert saved_tensors_hooks_active()
    seen = []
    x = torch.ones(3, requires_grad=True)
    torch.utils.checkpoint.checkpoint(
        lambda t: seen.append(saved_tensors_hooks_active()) or t.exp(), x, use_reentrant=False
    )
    assert seen == [True]
    assert not saved_tensors_hooks_active()


def test_unwrapped_step_is_the_optimizer_classes_own_update() -> None:
    step = unwrapped_step(torch.optim.SGD)
    assert step is not torch.optim.SGD.step, "torch no longer wraps Optimizer.step"
    assert step.__qualname__ == "SGD.step"
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    w.grad = torch.tensor([0.5, 0.5])
    opt = torch.optim.SGD([w], lr=0.1)
    with torch.no_grad():
        step(opt)
    torch.testing.assert_close(w.detach(), torch.tensor([0.95, -2.05]))


def test_optuna_rdb_models_and_study_id(tmp_path) -> None:
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("sqlalchemy")
    from sqlalchemy import orm, select

    from reglab._internals.optuna import rdb_models, study_id

    models = rdb_models()
    assert hasattr(models, "TrialModel"), "optuna.storages._rdb.models.TrialModel moved"
    assert hasattr(models, "TrialHeartbeatModel"), "...TrialHeartbeatModel moved"
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    optuna.create_study(storage=storage, study_name="other")
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({})
    study.ask()
    sid = study_id(study)
    assert sid == storage.get_study_id_from_name("s") != storage.get_study_id_from_name("other")
    trial = models.TrialModel
    with orm.Session(storage.engine) as session:
        rows = list(session.scalars(select(trial.trial_id).where(trial.study_id == sid)))
    assert len(rows) == 1
