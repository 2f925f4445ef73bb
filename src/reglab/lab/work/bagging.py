"""Bagged-ensemble trials and the ensemble error decomposition."""

from __future__ import annotations

import time
from collections.abc import Iterable

from torch.nn import functional as F

from reglab.ensembles import Bagging, error_decomposition
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import load_data
from reglab.lab.work.training import TrialContext, TrialOutcome, kernel_stats
from reglab.losses import (
    expected_calibration_error,
    reliability_diagram,
)

__all__ = ["run_bagging"]


def _member_mean(stats: Iterable[dict[str, float]]) -> dict[str, float]:
    """The mean over members of each kernel statistic: ``weight_norm`` is a member's ‖W‖₂,
    not the norm of all members' kernels together."""
    stats = list(stats)
    return {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}


def run_bagging(config: TrialConfig, seed: int, context: TrialContext) -> TrialOutcome:
    """A bagged ensemble of ``members`` models (Adam, the study's training settings)."""
    # Bagging trains all members at once, without per-epoch callbacks, on the context's device
    (train, test), val = load_data(config.data)
    (x, y), (xt, yt) = train, test
    ensemble, train_cfg = config.ensemble, config.train
    assert ensemble is not None
    start = time.perf_counter()
    bag = Bagging(
        lambda: config.model.build(config.data),
        n_members=ensemble.members,
        bootstrap=ensemble.bootstrap,
        seed=seed,
        epochs=train_cfg.epochs,
        batch_size=train_cfg.batch_size,
        lr=train_cfg.lr,
        device=context.device,
    ).fit(x, y)
    seconds = time.perf_counter() - start
    bag.stack_.cpu()  # metrics on the CPU, as every trial's
    members = bag.member_proba(xt)  # (K, N, C)
    decomposition = error_decomposition(members, F.one_hot(yt, members.shape[-1]).double())
    member_acc = (members.argmax(-1) == yt).double().mean(1)
    proba = bag.predict_proba(xt)
    bins = reliability_diagram(proba, yt, n_bins=15)
    train_acc, test_acc = bag.score(x, y), bag.score(xt, yt)
    metrics = {
        "train_acc": train_acc,
        "test_acc": test_acc,
        "gap": train_acc - test_acc,
        **({} if val is None else {"val_acc": bag.score(*val)}),
        "test_ece": expected_calibration_error(proba, yt),
        "mean_member_acc": member_acc.mean().item(),
        "members": float(decomposition["k"]),
        **{
            k: float(decomposition[k])
            for k in ("v", "c", "predicted_mse", "ensemble_mse", "mean_member_mse", "correlation")
        },
        **_member_mean(kernel_stats(m) for m in bag.stack_.unstack()),
        "seconds": seconds,
    }
    reliability = {
        "count": bins.count.tolist(),
        "confidence": bins.confidence.tolist(),
        "accuracy": bins.accuracy.tolist(),
    }
    return TrialOutcome(metrics, [], bag.stack_, reliability)
