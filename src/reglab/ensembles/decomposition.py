"""Why averaging helps, measured: the bias-variance-covariance and ambiguity decompositions."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from reglab._validation import invalid

__all__ = ["ambiguity_decomposition", "error_decomposition"]


def error_decomposition(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Ensemble squared error from the members' error variance and covariance.

    With ``e_k = predictions[k] - targets`` (k = 1..K), ``v`` the mean over members of
    ``mean(e_k²)`` and ``c`` the mean over member pairs ``k ≠ j`` of ``mean(e_k · e_j)``, the
    squared error of the average prediction is exactly ``v / K + (K − 1) c / K`` (Deep Learning
    book §7.11): averaging removes the uncorrelated part of the members' errors and keeps the
    correlated part ``c``. Means are taken over every element after the member dimension.

    Args:
        predictions: ``(K, N, ...)`` member predictions.
        targets: ``(N, ...)``.

    Returns:
        ``v``, ``c``, ``predicted_mse`` (``v/K + (K−1)c/K``), ``ensemble_mse`` (measured),
        ``mean_member_mse`` (= ``v``), ``correlation`` (``c / v``) and ``k``; computed in
        float64. ``c`` is 0 for K = 1.

    >>> preds = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    >>> d = error_decomposition(preds, torch.tensor([2.0, 2.0]))
    >>> d["v"], d["c"], d["ensemble_mse"]
    (0.5, -0.5, 0.0)
    """
    if predictions.ndim < 2 or predictions.shape[1:] != targets.shape:
        raise invalid(
            "predictions",
            "error_decomposition",
            "(K, N, ...) with targets of shape (N, ...)",
            f"{tuple(predictions.shape)} and targets {tuple(targets.shape)}",
        )
    k = predictions.shape[0]
    errors = (predictions.double() - targets.double()).reshape(k, -1)  # (K, M)
    gram = errors @ errors.T / errors.shape[1]  # (K, K): mean(e_k e_j)
    v = gram.diagonal().mean().item()
    c = ((gram.sum() - gram.diagonal().sum()) / (k * (k - 1))).item() if k > 1 else 0.0
    ensemble = errors.mean(0).square().mean().item()
    return {
        "k": k,
        "v": v,
        "c": c,
        "predicted_mse": v / k + (k - 1) * c / k,
        "ensemble_mse": ensemble,
        "mean_member_mse": v,
        "correlation": c / v if v > 0 else 0.0,
    }


def ambiguity_decomposition(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The Brier score of a probability-averaging ensemble = mean member Brier − ambiguity.

    For classification (Krogh & Vedelsby 1995): with ``p̄`` the members' mean probabilities,
    ``Brier(p) = mean_n Σ_c (p_nc − onehot(y)_nc)²`` and the ambiguity
    ``A = mean_k mean_n Σ_c (p_k,nc − p̄_nc)²`` (the members' disagreement),
    ``Brier(p̄) = mean_k Brier(p_k) − A`` exactly: the more members disagree at equal individual
    quality, the better the ensemble.

    Args:
        probs: ``(K, N, C)`` member class probabilities.
        y: ``(N,)`` class indices.

    Returns:
        ``ensemble_brier``, ``mean_member_brier``, ``ambiguity``, ``k`` (float64).
    """
    if probs.ndim != 3 or y.shape != probs.shape[1:2]:
        raise invalid(
            "probs",
            "ambiguity_decomposition",
            "(K, N, C) with y of shape (N,)",
            f"{tuple(probs.shape)} and y {tuple(y.shape)}",
        )
    p = probs.double()
    onehot = F.one_hot(y, p.shape[-1]).double()
    mean = p.mean(0)
    member = (p - onehot).square().sum(-1).mean(-1)  # (K,)
    return {
        "k": p.shape[0],
        "ensemble_brier": (mean - onehot).square().sum(-1).mean().item(),
        "mean_member_brier": member.mean().item(),
        "ambiguity": (p - mean).square().sum(-1).mean().item(),
    }
