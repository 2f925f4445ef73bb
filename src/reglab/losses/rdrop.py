"""R-Drop (Liang et al. 2021): two dropout passes over the same batch, and a symmetric KL
between their predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import InvalidParameterError, check_coefficient

__all__ = ["RDrop", "r_drop", "symmetric_kl"]

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """``½ · mean_i [KL(P1_i ‖ P2_i) + KL(P2_i ‖ P1_i)]``, softmax over the last dimension,
    averaged over every leading dimension (the batch).

    >>> symmetric_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor(0.)
    """
    lp, lq = F.log_softmax(logits1, dim=-1), F.log_softmax(logits2, dim=-1)
    kl_pq = (lp.exp() * (lp - lq)).sum(-1)
    kl_qp = (lq.exp() * (lq - lp)).sum(-1)
    return 0.5 * (kl_pq + kl_qp).mean()


def r_drop(
    logits1: torch.Tensor,
    logits2: torch.Tensor,
    y: Any,
    alpha: float,
    loss: LossFn = F.cross_entropy,
) -> torch.Tensor:
    """R-Drop's loss for two dropout passes over one batch::

        ½ · (loss(z1, y) + loss(z2, y)) + α · ½ · mean_i [KL(P1‖P2) + KL(P2‖P1)]

    (Liang et al. 2021, eq. 3, averaged over the batch). The authors' code sums the KL over
    the batch instead of averaging it, so their ``α`` is ours divided by the batch size.
    """
    return 0.5 * (loss(logits1, y) + loss(logits2, y)) + alpha * symmetric_kl(logits1, logits2)


class RDrop(nn.Module):
    """R-Drop as a loss for ``fit`` or any loop: ``RDrop(model, alpha)(output, y)``.

    A forward pre-hook on ``model`` keeps the last training input; the loss runs ``model`` a
    second time on it (another dropout mask), and returns :func:`r_drop` of the two outputs —
    the first being the ``output`` passed in. In ``eval()`` mode, or without a recorded input,
    it is ``loss(output, y)``. ``remove()`` drops the hook. Call it right after the forward
    whose output it receives (as ``fit`` does). Without a model, ``RDrop(alpha=α)(z1, z2,
    y)`` takes both outputs.

    Costs a second forward-backward pass per step (the paper concatenates the batch with
    itself; the same arithmetic). Works with ``reglab.attach``: penalties whose terms are
    recorded in forward (activity penalties) see both passes. With a compiled model, compile
    ``model`` and leave this loss eager; with gradient accumulation, each micro-batch carries
    its own pair.

    Args:
        model: the network whose dropout is regularized (None: pass both outputs).
        alpha: α >= 0, weight of the symmetric KL. The paper uses 0.3 to 5 (per example).
        loss: the data loss. Default ``F.cross_entropy``.

    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    >>> rdrop = RDrop(net, alpha=1.0)
    >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    >>> rdrop(net(x), y).ndim
    0
    >>> rdrop.remove()
    """

    def __init__(
        self, model: nn.Module | None = None, alpha: float = 1.0, loss: LossFn = F.cross_entropy
    ) -> None:
        super().__init__()
        self.alpha = check_coefficient(alpha, "alpha", "RDrop")
        self.loss = loss
        self._model = [model]  # a list: not registered as a submodule (no double parameters)
        self._input: tuple[Any, ...] | None = None
        self._replaying = False
        self._hook = None if model is None else model.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if module.training and not self._replaying and torch.is_grad_enabled():
            self._input = args

    def forward(self, output: torch.Tensor, *rest: Any) -> torch.Tensor:
        if len(rest) == 2:  # (z1, z2, y)
            return r_drop(output, rest[0], rest[1], self.alpha, self.loss)
        if len(rest) != 1:
            raise InvalidParameterError(
                "RDrop takes (output, y) with a model, or (logits1, logits2, y). "
                f"Got {1 + len(rest)} arguments."
            )
        (y,) = rest
        model = self._model[0]
        if model is None:
            raise InvalidParameterError(
                "RDrop without a model needs both outputs: rdrop(logits1, logits2, y)."
            )
        if not model.training or self._input is None:
            return self.loss(output, y)
        self._replaying = True
        try:
            second = model(*self._input)
        finally:
            self._replaying, self._input = False, None
        return r_drop(output, second, y, self.alpha, self.loss)

    def remove(self) -> None:
        """Remove the forward pre-hook from the model."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
