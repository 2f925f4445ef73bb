"""Train-mode forwards with gradients on and no ``penalty()`` (a validation loop that forgot
``model.eval()``, a teacher pass) keep no output or graph alive beyond their own step
(issue 24, case 11)."""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import torch
from torch import nn

import reglab
from reglab.penalties import L1, L1L2, L2, KLSparsity, TemporalDifference

RULES = {
    "relu-l1": {"1": dict(activity=L1(1e-3))},
    "linear-l2": {"0": dict(activity=L2(1e-3))},
    "every-kind": {
        "0": dict(activity=L1L2(1e-3, 1e-3)),
        "1": dict(activity=TemporalDifference(1e-3)),
        "3": dict(activity=KLSparsity(0.1, 1e-3)),
    },
}


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 16), nn.Sigmoid())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("rules", list(RULES), ids=list(RULES))
def test_a_thousand_forwards_without_penalty_leave_at_most_two_outputs(rules: str) -> None:
    torch.manual_seed(0)
    model = _model()
    reg = reglab.attach(model, RULES[rules])
    refs: list[weakref.ref] = []
    for module in model:
        module.register_forward_hook(lambda _m, _i, out: refs.append(weakref.ref(out)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the oldest are dropped": said once, tested elsewhere
        for _ in range(1000):
            out = model(torch.randn(32, 64))
        del out
    gc.collect()
    assert sum(r() is not None for r in refs) <= 2
    # The next training step is penalised as usual, stale records are not.
    x = torch.randn(32, 64)
    out = model(x)
    with pytest.warns(RuntimeWarning, match="freed"):
        penalty = reg.penalty()
    assert set(reg.terms()) == {b.term for b in reg.bindings.activities}
    (out.sum() + penalty).backward()


@pytest.mark.skipif(not hasattr(__import__("os"), "sysconf"), reason="needs /proc")
def test_memory_stays_flat_over_forwards_without_penalty() -> None:
    """Each forward holds ~8 MB of activations; the old bound (64 tokens, each with its graph)
    kept ~512 MB here. Resident memory after 200 forwards stays within 16 forwards' worth of
    the memory after 10 (allocator noise in a shared test process, not the activations)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
    reglab.attach(model, {nn.ReLU: dict(activity=L1(1e-4))})
    x = torch.randn(512, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(10):
            model(x)
        gc.collect()
        start = _rss_bytes()
        for _ in range(200):
            model(x)
        gc.collect()
    one_forward = 4 * 512 * 1024 * 4  # four (512, 1024) float32 activations
    assert _rss_bytes() - start < 16 * one_forward  # the old bound: 64 forwards
