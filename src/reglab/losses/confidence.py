"""The confidence penalty (Pereyra et al. 2017) as a loss: cross-entropy minus β times the
predictive entropy."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_coefficient
from reglab.penalties.entropy import entropy

__all__ = ["ConfidencePenalty"]


class ConfidencePenalty(nn.Module):
    """``loss(z, y) − β · mean_i H(softmax(z_i))`` (Pereyra et al. 2017).

    Penalizing low entropy keeps the network from putting all its mass on one class; where
    label smoothing pulls the prediction toward the uniform distribution through
    ``KL(u ‖ p)``, the confidence penalty is ``KL(p ‖ u)`` up to a constant (both push toward
    uniform; they weigh wrong classes differently). The paper uses β in [0.1, 4] and annealed
    it for large models. The same term, attached to the logits layer as an activity penalty,
    is ``reglab.penalties.NegativeEntropy(β)``.

    Args:
        beta: β, a finite number >= 0. Default 0.1.
        loss: the data loss ``loss(logits, y) -> scalar``. Default ``F.cross_entropy`` (a
            batch mean, matching the entropy's mean).

    Shape:
        logits ``(N, k)``, targets as ``loss`` takes them -> scalar.

    >>> z, y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    >>> ConfidencePenalty(1.0)(z, y)  # uniform: CE = log 3, H = log 3
    tensor(0.)
    """

    def __init__(
        self,
        beta: float = 0.1,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    ) -> None:
        super().__init__()
        self.beta = check_coefficient(beta, "beta", "ConfidencePenalty")
        self.loss = loss

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, y) - self.beta * entropy(logits).mean()

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
