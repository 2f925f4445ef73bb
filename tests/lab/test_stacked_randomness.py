"""Stacked trials with dropout, input noise, weight noise and augmentation: every member draws its own
masks, noise and affine maps, so a stacked member equals the lone trial *in distribution*
(not bitwise). Checked statistically, with checks that fail when the randomness is shared
across members or switched off:

* mask level: each member's dropout rate is ``p`` (binomial bounds) and two members drop the
  same unit at rate ``p²`` (independent), not ``p`` (shared masks) — 0 if dropout were off;
  input and weight noise have std ``σ`` per member and no correlation between members;
* trial level: over seeds, the stacked members' final training loss and test accuracy are
  consistent with the lone trials' (Welch's t), while the same statistic separates the lone
  dropout trials from stacked trials without dropout.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from reglab.ensembles import ModelStack
from reglab.lab import parse_study, run_trial
from reglab.lab.work.classifier import _mixer, _transform
from reglab.lab.work.stacking import _MemberMix, _PerMember, _Rows, run_stacked, stack_key

P = 0.5
NOISE = 0.3
SEEDS = [0, 1, 2, 3, 4, 5]
STUDY = {
    "name": "stk-random",
    "seeds": SEEDS,
    "data": {"name": "digits", "subset": 400, "validation": 0.2},
    "model": {"sizes": [64, 32, 10]},
    "train": {"epochs": 6, "batch_size": 32},
    "grid": [
        {"name": "plain"},
        {"name": "dropout", "model": {"dropout": P, "input_dropout": 0.2}},
        {"name": "dropout-noise", "model": {"dropout": P}, "input_noise": NOISE},
        {"name": "noise", "input_noise": NOISE},
        {"name": "augment", "augment": {"degrees": 10, "translate": 0.1, "scale": [0.9, 1.1]}},
        {"name": "weight-noise", "weight_noise": 0.01},
        {"name": "mixup", "mix": {"kind": "mixup", "alpha": 0.2}},
    ],
}


def _configs() -> dict:
    return {p.key: p.config for p in parse_study(STUDY, "stk-random").points}


def test_dropout_noise_weight_noise_augmentation_and_mixing_stack() -> None:
    configs = _configs()
    keys = {name: stack_key(config) for name, config in configs.items()}
    for name in keys:
        assert keys[name] is not None, name
    assert len(set(keys.values())) == len(keys)  # each with its own kind of randomness
    # weight noise goes through ModelStack's vmap path: with rules it runs alone
    ruled = configs["weight-noise"].override({"rules": {"fc*": {"kernel": "l2"}}})
    assert stack_key(ruled) is None


def _binomial_bound(p: float, n: int) -> float:
    """Six standard errors of a rate ``p`` estimated from ``n`` draws."""
    return 6 * math.sqrt(p * (1 - p) / n)


def test_each_member_draws_its_own_dropout_masks_at_rate_p() -> None:
    """The lab's stack (``ModelStack`` of the trial's network, per-member batches): the mask
    of ``drop0`` per member has rate ``p``; two members agree on a dropped unit at ``p²``."""
    config = _configs()["dropout"]
    torch.manual_seed(0)
    k = 4
    model = _PerMember(ModelStack([config.network() for _ in range(k)]))
    model.train()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    drop = model.stack.get_submodule("drop0")
    drop.register_forward_hook(lambda _m, i, o: seen.append((i[0], o)))
    x = torch.rand(256, 64).unsqueeze(1).expand(-1, k, -1)  # (b, K, F): the same rows
    model(x)
    inputs, outputs = seen[0]  # (K, b, 32) each
    live = inputs != 0  # ReLU zeros are not dropout's
    dropped = (outputs == 0) & live  # (K, b, 32)
    for member in range(k):
        n = int(live[member].sum())
        rate = float(dropped[member].sum()) / n
        assert abs(rate - P) < _binomial_bound(P, n), (member, rate)
    both_live = live[0] & live[1]
    n = int(both_live.sum())
    joint = float((dropped[0] & dropped[1] & both_live).sum()) / n
    # shared masks would give p (0.5), dropout off 0; independent masks p² (0.25)
    assert abs(joint - P * P) < _binomial_bound(P * P, n), joint


def test_each_member_draws_its_own_input_noise_and_affine_maps() -> None:
    configs = _configs()
    k = 3
    x = torch.rand(512, 64).unsqueeze(1).expand(-1, k, -1)  # (b, K, F)
    torch.manual_seed(0)
    noise = _Rows(_transform(configs["noise"]))(x) - x  # (b, K, F)
    for member in range(k):
        assert noise[:, member].std().item() == pytest.approx(NOISE, rel=0.02)
    # independent: correlation ~ N(0, 1/n) (shared noise would give 1)
    correlation = torch.corrcoef(torch.stack([noise[:, 0].flatten(), noise[:, 1].flatten()]))
    assert abs(correlation[0, 1].item()) < 6 / math.sqrt(noise[:, 0].numel())
    augmented = _Rows(_transform(configs["augment"]))(x)
    assert not torch.allclose(augmented[:, 0], x[:, 0])  # augmentation on
    # each member's copy of a row gets its own affine map
    assert (augmented[:, 0] - augmented[:, 1]).abs().amax(1).gt(1e-3).float().mean() > 0.9


def test_each_member_draws_its_own_weight_noise() -> None:
    """The trial's first layer (``WeightNoise(Linear(64, 32))``), three identical members,
    input the identity: ``out[k] - out_eval[k]`` is member ``k``'s weight noise — std ``σ``
    each, uncorrelated between members (shared noise would give 1, no noise std 0)."""
    layer = _configs()["weight-noise"].network().fc0
    stack = ModelStack([copy.deepcopy(layer) for _ in range(3)])
    x = torch.eye(64)
    stack.eval()
    clean = stack(x)  # (K, 64, 32)
    stack.train()
    torch.manual_seed(0)
    noise = (stack(x) - clean).detach()  # (K, 64, 32): each member's noise, transposed
    for member in range(3):
        assert noise[member].std().item() == pytest.approx(0.01, rel=0.05)
    correlation = torch.corrcoef(torch.stack([noise[0].flatten(), noise[1].flatten()]))
    assert abs(correlation[0, 1].item()) < 6 / math.sqrt(noise[0].numel())


def test_each_member_mixes_its_own_batch_with_its_own_draw() -> None:
    config = _configs()["mixup"]
    k, b = 4, 64
    x = torch.rand(b, 64).unsqueeze(1).expand(-1, k, -1)  # (b, K, F): the same rows
    y = torch.randint(0, 10, (b,)).unsqueeze(1).expand(-1, k)  # (b, K)
    torch.manual_seed(0)
    mixed, targets = _MemberMix(_mixer(config))(x, y)
    assert mixed.shape == (b, k, 64)
    assert targets.shape == (b, k, 10)
    assert torch.allclose(targets.sum(-1), torch.ones(b, k))
    for member in range(1, k):  # own λ and partner order: no two members alike
        assert not torch.allclose(targets[:, member], targets[:, 0])
    members = [(config, seed) for seed in (0, 1, 2)]
    stacked = run_stacked(members)
    for outcome in stacked:
        assert math.isfinite(outcome.history[-1]["loss"])
        assert 0 <= outcome.history[-1]["acc"] <= 1
    # it learns through its soft targets as the lone trials do (loosely: three seeds)
    alone = [run_trial(c, seed).metrics["test_acc"] for c, seed in members]
    together = [o.metrics["test_acc"] for o in stacked]
    assert sum(together) / 3 == pytest.approx(sum(alone) / 3, abs=0.1), (together, alone)


def _welch_t(a: list[float], b: list[float]) -> float:
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    se = math.sqrt(ta.var().item() / len(a) + tb.var().item() / len(b))
    return (ta.mean().item() - tb.mean().item()) / max(se, 1e-12)


def _final(outcomes, key: str) -> list[float]:
    if key == "loss":  # the last epoch's training loss, under dropout and noise
        return [o.history[-1]["loss"] for o in outcomes]
    return [o.metrics[key] for o in outcomes]


@pytest.mark.slow
def test_stacked_dropout_and_noise_trials_match_lone_trials_in_distribution() -> None:
    """Over six seeds: stacked members vs the same seeds alone, |t| < 4 on the final training
    loss and the test accuracy; stacked members *without* dropout and noise are told apart
    from the lone dropout trials by the same statistic (|t| > 4), so the check has power."""
    configs = _configs()
    noisy = configs["dropout-noise"]
    alone = [run_trial(noisy, seed) for seed in SEEDS]
    stacked = run_stacked([(noisy, seed) for seed in SEEDS])
    off = run_stacked([(configs["plain"], seed) for seed in SEEDS])
    for key in ("loss", "test_acc"):
        t = _welch_t(_final(stacked, key), _final(alone, key))
        assert abs(t) < 4, (key, t, _final(stacked, key), _final(alone, key))
    t_off = _welch_t(_final(off, "loss"), _final(alone, "loss"))
    assert abs(t_off) > 4, (t_off, _final(off, "loss"), _final(alone, "loss"))
    # and the members differ from each other beyond their initialisation: no two alike
    losses = _final(stacked, "loss")
    assert len({round(v, 6) for v in losses}) == len(SEEDS)
