"""Output-distribution penalties: the negative entropy of a softmax (the confidence penalty)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from reglab._validation import Checked, check_coefficient
from reglab.penalties._base import Penalty, registry

__all__ = ["NegativeEntropy", "entropy"]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H(softmax(z)) = −Σ_c p_c log p_c`` of each row (natural log), shape ``logits.shape[:-1]``.

    Computed from ``log_softmax``, so it stays finite for large logits.

    >>> entropy(torch.zeros(2, 4))  # uniform over 4 classes: log 4
    tensor([1.3863, 1.3863])
    """
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


@registry.register("negative_entropy", "confidence_penalty")
class NegativeEntropy(Penalty):
    """Confidence penalty ``−coefficient · Σ_rows H(softmax(x))`` (Pereyra et al. 2017,
    "Regularizing neural networks by penalizing confident output distributions").

    Attached as an **activity** penalty to the layer that outputs the logits, with the default
    ``activity_reduction="batch"`` (the sum divided by the batch size), it adds
    ``−β · mean_i H(p_i)`` to the loss: low-entropy (over-confident) predictions cost more.
    ``reglab.losses.ConfidencePenalty`` is the same term folded into a cross-entropy loss.
    Against label smoothing (a KL to the uniform distribution, in the other direction), see
    the losses guide.

    Args:
        coefficient: β, a finite number >= 0. Default 0.1 (the paper's range: 0.1 to 4).

    Shape:
        ``(*, classes)``: logits, softmax over the last dimension. Returns a 0-dim tensor.

    >>> NegativeEntropy(1.0)(torch.zeros(3, 2))  # 3 rows of uniform 2-way: −3 log 2
    tensor(-2.0794)
    """

    coefficient = Checked(check_coefficient)

    def __init__(self, coefficient: float = 0.1) -> None:
        self.coefficient = coefficient

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 0:
            raise ValueError("NegativeEntropy needs logits of shape (*, classes). Got a scalar.")
        return -self.coefficient * entropy(x).sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        # dH/dz_j = −p_j (log p_j + H), so d(−β Σ H)/dz = β p (log p + H) row by row.
        log_p = F.log_softmax(x, dim=-1)
        p = log_p.exp()
        h = -(p * log_p).sum(-1, keepdim=True)
        return (log_p + h).mul_(p).mul_(self.coefficient)

    def get_config(self) -> dict[str, Any]:
        return {"coefficient": self.coefficient}
