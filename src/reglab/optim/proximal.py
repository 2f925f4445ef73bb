"""Proximal L1: soft-thresholding after each optimizer step, for weights that are exactly zero.

A subgradient L1 penalty (``reglab.penalties.L1`` on the loss) pushes each weight by
``lr · l1 · sign(w)`` every step, so weights oscillate around zero and end *near* it, almost
never *at* it. The proximal step of ``l1 · ‖w‖₁`` replaces that push with the closed-form
minimiser of ``l1 · ‖w‖₁ + ‖w − w'‖² / (2η)`` around the optimizer's result ``w'``:

    w ← sign(w') · max(|w'| − η · l1, 0)

which sets every weight whose magnitude is below ``η · l1`` to exactly 0 (ISTA; with SGD and
no momentum, a fixed point of it is exactly a lasso solution).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from reglab._validation import Checked, InvalidParameterError, check_coefficient, invalid
from reglab.layouts import named_kernels

__all__ = ["ProximalL1", "proximal_l1"]


class ProximalL1:
    """What :func:`proximal_l1` returns: ``l1`` (change it, or give it a
    ``reglab.schedules`` schedule), ``params``, ``value()`` (``l1 · Σ|w|`` now, detached, for
    logging), ``zero_fraction()``, and ``remove()``."""

    l1 = Checked(check_coefficient, owner="proximal_l1")

    def __init__(
        self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], l1: float
    ) -> None:
        self.l1 = l1
        self.params = params
        ours = {id(p) for p in params}
        known = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [i for i, p in enumerate(params) if id(p) not in known]
        if missing:
            raise InvalidParameterError(
                f"proximal_l1: {len(missing)} of the {len(params)} parameters are not in the "
                "optimizer, whose learning rate sets the threshold; pass parameters it steps."
            )
        self._optimizer = optimizer
        self._ours = ours
        self._hook = optimizer.register_step_post_hook(lambda *_: self.step())

    @torch.no_grad()
    def step(self) -> None:
        """Soft-threshold the parameters by ``lr · l1``, ``lr`` each one's group learning rate
        (run by the optimizer's step post-hook; call it yourself only without one)."""
        if self.l1 == 0:
            return
        for group in self._optimizer.param_groups:
            # A parameter frozen since (requires_grad_(False)) is left where it is.
            ws = [p for p in group["params"] if id(p) in self._ours and p.requires_grad]
            if not ws:
                continue
            threshold = float(group["lr"]) * self.l1
            # w − clamp(w, −t, t) = sign(w) · max(|w| − t, 0), with one temporary per tensor.
            inside = torch._foreach_clamp_max(ws, threshold)
            torch._foreach_clamp_min_(inside, -threshold)
            torch._foreach_sub_(ws, inside)

    @torch.no_grad()
    def value(self) -> torch.Tensor:
        """``l1 · Σ|w|`` over the parameters (what the step minimises, for logging)."""
        return self.l1 * torch.stack([p.abs().sum() for p in self.params]).sum()

    @torch.no_grad()
    def zero_fraction(self) -> float:
        """The fraction of the parameters' entries that are exactly 0."""
        zeros = sum(int((p == 0).sum()) for p in self.params)
        return zeros / max(1, sum(p.numel() for p in self.params))

    def remove(self) -> None:
        self._hook.remove()

    def __repr__(self) -> str:
        return f"ProximalL1(l1={self.l1:g}, tensors={len(self.params)})"


def proximal_l1(
    optimizer: torch.optim.Optimizer,
    params: nn.Module | Iterable[torch.Tensor],
    l1: float,
) -> ProximalL1:
    """After every ``optimizer`` step, soft-threshold ``params`` by ``η · l1``.

    Args:
        optimizer: any ``torch.optim`` optimizer that steps ``params``.
        params: a module (its kernels, as :mod:`reglab.layouts` defines them: biases and
            gains are left alone) or the tensors themselves.
        l1: the L1 coefficient λ of ``λ · Σ|w|``, a finite number >= 0.

    **What η is.** η is the learning rate of the parameter's group, read at every step (so an
    LR scheduler's value is used). For plain SGD that is the step the gradient took, and the
    iteration is proximal gradient descent: it minimises ``loss + l1 · Σ|w|`` (tested against
    scikit-learn's ``Lasso``). With momentum or an adaptive optimizer (Adam scales each
    coordinate's step by ``1 / (√v̂ + ε)``) the nominal rate is not the step taken: the
    threshold is still ``lr · l1`` per step, which gives exact zeros and a penalty of the same
    form, but its effective strength differs from a loss-side ``L1(l1)`` (compare them at
    matched sparsity, as the ``proximal-l1`` study does).

    Returns a :class:`ProximalL1` handle.

    >>> from torch import nn
    >>> model = nn.Linear(4, 2)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> prox = proximal_l1(opt, model, l1=100.0)  # a threshold of 10: every weight to 0
    >>> model(torch.randn(3, 4)).sum().backward(); opt.step()
    >>> prox.zero_fraction(), bool((model.bias != 0).any())
    (1.0, True)
    """
    if isinstance(params, nn.Module):
        tensors = [p for _, _, _, p in named_kernels(params) if p.requires_grad]
    else:
        tensors = list(params)
        if not all(isinstance(p, torch.Tensor) for p in tensors):
            raise invalid("params", "proximal_l1", "a module or an iterable of tensors", params)
    if not tensors:
        raise invalid("params", "proximal_l1", "a module with kernels, or tensors", params)
    return ProximalL1(optimizer, tensors, l1)
