"""The optimizer side of a study: ``train.optimizer = "adamw"`` and ``train.weight_decay``
(kernels only), ``proximal_l1`` and coefficient ``schedules`` — parsed with key-path errors,
and trained as the library would."""

from __future__ import annotations

import pytest
import torch

from reglab.lab import StudyError, expand, parse_study, run_trial
from reglab.lab.work.training import make_optimizer

BASE = {
    "name": "s",
    "seeds": [0],
    "data": {"subset": 200},
    "model": {"sizes": [64, 16, 10]},
    "train": {"epochs": 2},
}


def _config(**entry):
    (point,) = expand(parse_study({**BASE, "grid": [{"name": "a", **entry}]}, "s"))
    return point.config


def test_weight_decay_reaches_kernels_only_and_adamw_defaults_to_none() -> None:
    config = _config(train={"optimizer": "adamw", "weight_decay": 0.1})
    model = config.network()
    optimizer = make_optimizer(model, config.train)
    assert isinstance(optimizer, torch.optim.AdamW)
    decays = {
        name: group["weight_decay"]
        for group in optimizer.param_groups
        for name, p in model.named_parameters()
        if any(p is q for q in group["params"])
    }
    assert decays == {"fc0.weight": 0.1, "fc0.bias": 0.0, "fc1.weight": 0.1, "fc1.bias": 0.0}
    plain = _config(train={"optimizer": "adamw"})
    optimizer = make_optimizer(plain.network(), plain.train)
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)  # not AdamW's 0.01


def test_a_schedule_in_a_study_file_sets_and_logs_the_coefficient() -> None:
    config = _config(
        rules={"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 0.0}}}},
        schedules=[
            {
                "target": "rules.fc*.kernel",
                "schedule": {
                    "class_name": "Linear",
                    "config": {"start": 0.0, "end": 0.01, "steps": 2},
                },
                "per": "epoch",
            }
        ],
    )
    history = run_trial(config, 0).history
    assert [row["schedule/rules.fc*.kernel"] for row in history] == [0.005, 0.01]


def test_proximal_l1_in_a_study_file_makes_exact_zeros() -> None:
    metrics = run_trial(_config(proximal_l1=0.05, train={"optimizer": "sgd", "lr": 0.1}), 0).metrics
    assert metrics["weight_zero_frac"] > 0.1
    assert run_trial(_config(), 0).metrics["weight_zero_frac"] == 0.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {
                "schedules": [
                    {"target": "norm_bound", "schedule": {"class_name": "constant", "config": {}}}
                ]
            },
            r"^s\.grid\[0\]\.schedules\[0\]\.target: this grid point has no norm_bound",
        ),
        (
            {"schedules": [{"target": "rules.nope.kernel", "schedule": "warmup"}]},
            r"^s\.grid\[0\]\.schedules\[0\]\.schedule: expected a table like",
        ),
        (
            {
                "schedules": [
                    {
                        "target": "rules.nope.kernel",
                        "schedule": {"class_name": "cosine", "config": {}},
                    }
                ]
            },
            r"^s\.grid\[0\]\.schedules\[0\]\.target: expected 'norm_bound', 'proximal_l1' or "
            r"'rules.<glob>.<kind>' naming one of this point's rules \(none\)",
        ),
        (
            {
                "rules": {"fc*": {"kernel": "l1l2"}},
                "schedules": [
                    {"target": "rules.fc*.kernel", "schedule": {"class_name": "step", "config": {}}}
                ],
            },
            r"^s\.grid\[0\]\.schedules\[0\]\.attribute: schedule: L1L2 has several coefficients",
        ),
        (
            {
                "schedules": [
                    {"target": "proximal_l1", "schedule": {"class_name": "exp", "config": {}}}
                ]
            },
            r"^s\.grid\[0\]\.schedules\[0\]\.schedule: Could not interpret schedule identifier",
        ),
        ({"schedules": {"target": "x"}}, r"^s\.grid\[0\]\.schedules: expected a list"),
        ({"proximal_l1": -1}, r"^s\.grid\[0\]\.proximal_l1: must be a finite number >= 0"),
        ({"train": {"weight_decay": -0.1}}, r"^s\.grid\[0\]\.train\.weight_decay: must be a"),
        ({"train": {"optimizer": "lion"}}, r"^s\.grid\[0\]\.train\.optimizer: expected 'adam'"),
    ],
)
def test_optimizer_side_errors_name_their_key(entry: dict, message: str) -> None:
    with pytest.raises(StudyError, match=message):
        expand(parse_study({**BASE, "grid": [{"name": "a", **entry}]}, "s"))
