"""Dropout as an ensemble: Monte-Carlo averaging vs the weight-scaling rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from reglab._validation import check_positive_int
from reglab.stochastic import (
    DropConnect,
    EmbeddingDropout,
    GaussianDropout,
    LockedDropout,
    WeightDrop,
)

__all__ = ["MCDropoutPrediction", "compare_inference_rules", "mc_dropout_predict"]

_DROPOUT = (_DropoutNd, GaussianDropout, LockedDropout, WeightDrop, DropConnect, EmbeddingDropout)


class MCDropoutPrediction(NamedTuple):
    """Mean and standard deviation over ``n_samples`` dropout masks."""

    mean: torch.Tensor
    std: torch.Tensor
    n_samples: int


def _softmax(z: torch.Tensor) -> torch.Tensor:
    return z.softmax(-1)


@torch.no_grad()
def mc_dropout_predict(
    model: nn.Module,
    x: torch.Tensor,
    n_samples: int = 30,
    *,
    apply: Callable[[torch.Tensor], torch.Tensor] | None = _softmax,
    seed: int | None = None,
) -> MCDropoutPrediction:
    """Average predictions over random dropout masks (Gal & Ghahramani 2016).

    The model is put in eval mode except its dropout-family modules (``nn.Dropout*``,
    reglab's dropout variants), which keep sampling masks; each of ``n_samples`` forward
    passes is a sub-network of the bagged-like ensemble dropout trains, and ``apply``
    (softmax by default; ``None`` for raw outputs) is applied before averaging. The model's
    modes are restored afterwards. The spread (``std``) is an uncertainty estimate.

    Args:
        model: the network.
        x: a batch.
        n_samples: number of masks (>= 1).
        apply: per-sample output transform before averaging.
        seed: seeds the masks without touching the global random state.

    Returns:
        ``MCDropoutPrediction`` with ``mean`` and ``std`` of shape of ``apply(model(x))``.
    """
    n_samples = check_positive_int(n_samples, "n_samples", "mc_dropout_predict")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if isinstance(m, _DROPOUT):
            m.train()
    try:
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            if seed is not None:
                torch.manual_seed(seed)
            samples = torch.stack(
                [apply(model(x)) if apply is not None else model(x) for _ in range(n_samples)]
            )
    finally:
        for m, mode in modes.items():
            m.training = mode
    std = samples.std(0) if n_samples > 1 else torch.zeros_like(samples[0])
    return MCDropoutPrediction(samples.mean(0), std, n_samples)


def compare_inference_rules(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n_samples: int = 50,
    seed: int | None = 0,
) -> dict[str, dict[str, float]]:
    """Accuracy and negative log-likelihood of a dropout classifier under both inference rules.

    ``"weight_scaling"``: one deterministic pass in eval mode (torch's dropout scales by
    ``1/(1-p)`` in training, so eval uses the weights as they are: Hinton's weight-scaling
    rule). ``"mc_dropout"``: the mean of ``n_samples`` softmax outputs with dropout on.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        scaled = model(x).softmax(-1)
    model.train(was_training)
    mc = mc_dropout_predict(model, x, n_samples, seed=seed).mean

    def scores(p: torch.Tensor) -> dict[str, float]:
        nll = -p.gather(1, y[:, None]).clamp_min(1e-12).log().mean().item()
        return {"accuracy": (p.argmax(1) == y).double().mean().item(), "nll": nll}

    return {"weight_scaling": scores(scaled), "mc_dropout": scores(mc)}
