"""Label smoothing in its two published forms."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_choice, check_positive_int, invalid

__all__ = ["FORMS", "LabelSmoothingCrossEntropy", "smooth_targets"]

#: ``"uniform"``: (1-ε)·onehot + ε/k — Szegedy et al. 2016, Keras, PyTorch's
#: ``F.cross_entropy(label_smoothing=ε)``. The true class gets 1-ε+ε/k.
#: ``"others"``: 1-ε on the true class, ε/(k-1) on each other class — the Deep Learning book's
#: §7.5.1 form. The true class gets exactly 1-ε.
FORMS = ("uniform", "others")


def _check_eps(eps: float, owner: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
        raise invalid("eps", owner, "a float in [0, 1)", eps)
    return float(eps)


def smooth_targets(
    y: torch.Tensor,
    num_classes: int,
    eps: float,
    form: str = "uniform",
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Soft target distributions for integer labels.

    Args:
        y: class indices, shape ``(N,)``, values in ``[0, num_classes)``.
        num_classes: k >= 2.
        eps: smoothing in [0, 1).
        form: ``"uniform"`` or ``"others"`` (see ``FORMS``).
        dtype: floating dtype of the result, computed in it (``ε/k`` in float64 for float64
            logits). Default: ``torch.get_default_dtype()``.

    Returns:
        ``(N, num_classes)`` tensor of ``dtype`` whose rows sum to 1.

    >>> smooth_targets(torch.tensor([0]), 3, 0.3, "others")
    tensor([[0.7000, 0.1500, 0.1500]])
    """
    num_classes = check_positive_int(num_classes, "num_classes", "smooth_targets", minimum=2)
    eps = _check_eps(eps, "smooth_targets")
    check_choice(form, "form", "smooth_targets", FORMS)
    onehot = F.one_hot(y, num_classes).to(dtype or torch.get_default_dtype())
    if form == "uniform":
        return onehot * (1.0 - eps) + eps / num_classes
    return onehot * (1.0 - eps) + (1.0 - onehot) * (eps / (num_classes - 1))


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against smoothed targets, averaged over the batch.

    ``loss = mean_i( -Σ_c q_ic log softmax(z_i)_c )`` with ``q = smooth_targets(y, k, eps,
    form)``. With ``form="uniform"`` it equals ``F.cross_entropy(z, y, label_smoothing=eps)``.
    Smoothing stops the logits from growing without bound to fit hard 0/1 targets, which
    improves calibration (Müller et al. 2019).

    Shape:
        logits ``(N, k)``, targets ``(N,)`` int64 -> scalar.
    """

    def __init__(self, eps: float = 0.1, form: str = "uniform") -> None:
        super().__init__()
        self.eps = _check_eps(eps, "LabelSmoothingCrossEntropy")
        self.form = check_choice(form, "form", "LabelSmoothingCrossEntropy", FORMS)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q = smooth_targets(y, logits.shape[-1], self.eps, self.form, dtype=logits.dtype)
        return -(q * F.log_softmax(logits, dim=-1)).sum(-1).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}, form={self.form!r}"
