"""Calibration: expected calibration error, reliability diagrams, temperature scaling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from reglab._validation import check_positive_int, invalid

__all__ = ["Reliability", "expected_calibration_error", "fit_temperature", "reliability_diagram"]


@dataclass(frozen=True)
class Reliability:
    """Per-bin statistics of a reliability diagram (equal-width confidence bins).

    ``edges`` has ``n_bins + 1`` entries; ``count``, ``confidence`` (mean max-probability) and
    ``accuracy`` have ``n_bins`` (NaN for empty bins).
    """

    edges: torch.Tensor
    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor


def _check(probs: torch.Tensor, y: torch.Tensor, owner: str) -> None:
    if probs.ndim != 2 or y.shape != probs.shape[:1]:
        raise invalid(
            "probs",
            owner,
            "(N, k) probabilities with y of shape (N,)",
            f"probs {tuple(probs.shape)}, y {tuple(y.shape)}",
        )


def reliability_diagram(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> Reliability:
    """Bin predictions by confidence ``max_c p_c`` into ``n_bins`` equal-width bins over
    ``[0, 1]`` (right-closed, as Guo et al. 2017) and return count, mean confidence and
    accuracy per bin."""
    _check(probs, y, "reliability_diagram")
    n_bins = check_positive_int(n_bins, "n_bins", "reliability_diagram")
    confidence, prediction = probs.detach().max(dim=1)
    correct = (prediction == y).to(probs.dtype)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype, device=probs.device)
    # bin b holds confidences in (edges[b], edges[b+1]]; confidence 0 would fall in bin 0.
    index = torch.bucketize(confidence, edges[1:-1], right=False)
    count = torch.bincount(index, minlength=n_bins).to(probs.dtype)
    conf_sum = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device).index_add_(
        0, index, confidence
    )
    acc_sum = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device).index_add_(
        0, index, correct
    )
    return Reliability(edges, count, conf_sum / count, acc_sum / count)


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b| over equal-width confidence bins
    (Naeini et al. 2015; Guo et al. 2017 use 15 bins).

    Args:
        probs: ``(N, k)`` predicted probabilities (softmax outputs, not logits).
        y: ``(N,)`` true class indices.
        n_bins: number of bins. Default 15.
    """
    r = reliability_diagram(probs, y, n_bins)
    filled = r.count > 0
    gaps = (r.accuracy[filled] - r.confidence[filled]).abs()
    return float((r.count[filled] * gaps).sum() / r.count.sum())


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, max_iter: int = 100) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T > 0`` minimising the NLL of
    ``softmax(logits / T)`` on held-out data, found with L-BFGS on ``log T``."""
    _check(logits, y, "fit_temperature")
    logits = logits.detach()
    log_t = torch.zeros((), dtype=logits.dtype, device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
