"""Multi-class focal loss (Lin et al. 2017) with label-smoothed targets."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_choice, check_coefficient
from reglab.losses.smoothing import FORMS, _check_eps, smooth_targets

__all__ = ["FocalLoss"]


class FocalLoss(nn.Module):
    """``mean_i( −Σ_c q_ic (1 − p_ic)^γ log p_ic )`` with ``p = softmax(z)`` and ``q`` the
    label-smoothed targets ``smooth_targets(y, k, eps, form)`` (Lin et al. 2017's focal loss,
    softmax form; with smoothing, the form used by e.g. detection and long-tail codebases).

    ``(1 − p)^γ`` down-weights the classes the model already predicts well. ``gamma=0`` is
    :class:`LabelSmoothingCrossEntropy` (and, with ``form="uniform"``,
    ``F.cross_entropy(label_smoothing=eps)``); ``eps=0`` is the plain focal loss
    ``−(1 − p_y)^γ log p_y``.

    Args:
        gamma: γ >= 0. Default 2.0 (the paper's).
        eps: label smoothing in [0, 1). Default 0.0.
        form: ``"uniform"`` or ``"others"`` (see ``reglab.losses.smoothing.FORMS``).

    Shape:
        logits ``(N, k)``, targets ``(N,)`` int64 -> scalar.

    >>> z, y = torch.zeros(2, 4), torch.tensor([0, 3])
    >>> FocalLoss(gamma=0.0)(z, y)  # uniform prediction: log 4
    tensor(1.3863)
    """

    def __init__(self, gamma: float = 2.0, eps: float = 0.0, form: str = "uniform") -> None:
        super().__init__()
        self.gamma = check_coefficient(gamma, "gamma", "FocalLoss")
        self.eps = _check_eps(eps, "FocalLoss")
        self.form = check_choice(form, "form", "FocalLoss", FORMS)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1)
        q = smooth_targets(y, logits.shape[-1], self.eps, self.form, dtype=logits.dtype)
        modulation = (1.0 - log_p.exp()).pow(self.gamma) if self.gamma else 1.0
        return -(q * modulation * log_p).sum(-1).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, eps={self.eps}, form={self.form!r}"
