"""Penalties on activations that are statistics over the batch: KL sparsity and TAR."""

from __future__ import annotations

import math
from typing import Any

import torch

from reglab._validation import Checked, check_coefficient, invalid
from reglab.penalties._base import Penalty, registry

__all__ = ["KLSparsity", "TemporalDifference"]

_CLAMP = 1e-7  # keeps log(rho_hat) finite for a unit that is exactly 0 or 1 over the batch


def _check_target(value: Any, name: str, owner: str) -> float:
    target = check_coefficient(value, name, owner)
    if not 0.0 < target < 1.0:
        raise invalid(name, owner, "a number in (0, 1)", value)
    return target


@registry.register("kl_sparsity")
class KLSparsity(Penalty):
    """Sparse-autoencoder penalty ``coefficient * sum_j KL(rho || rho_hat_j)`` (Ng's UFLDL
    notes).

    ``rho_hat_j`` is the mean activation of unit ``j`` over every leading dimension of the
    input (the batch), and ``KL(p || q) = p log(p/q) + (1-p) log((1-p)/(1-q))`` between
    Bernoulli distributions. Activations must be in ``[0, 1]`` (sigmoid codes); ``rho_hat`` is
    clamped to ``[1e-7, 1 - 1e-7]`` so a unit that is exactly 0 over the batch stays finite.

    The value is already a mean over the batch (``batch_normalized``), so ``reglab.attach``
    does not divide it by the batch size again.

    Args:
        target: desired mean activation ``rho``, in (0, 1). Default 0.05.
        coefficient: UFLDL's ``beta``, a finite number >= 0. Default 1.0.

    Shape:
        ``(*, units)``: the last dimension indexes units. Returns a 0-dim tensor.

    >>> KLSparsity(target=0.5)(torch.full((4, 3), 0.5))
    tensor(0.)
    """

    batch_normalized = True
    target = Checked(_check_target)
    coefficient = Checked(check_coefficient)

    def __init__(self, target: float = 0.05, coefficient: float = 1.0) -> None:
        self.target = target
        self.coefficient = coefficient

    def _rho_hat(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 0:
            raise ValueError("KLSparsity needs activations of shape (*, units). Got a scalar.")
        lo, hi = torch.aminmax(x.detach())
        if torch.compiler.is_compiling():  # no data-dependent branch inside a graph
            torch._assert_async((lo >= 0.0) & (hi <= 1.0), "KLSparsity needs activations in [0, 1]")
        elif bool((lo < 0.0) | (hi > 1.0)):  # one device sync per call, not two
            raise ValueError(
                "KLSparsity needs activations in [0, 1] (e.g. sigmoid outputs). Got values in "
                f"[{lo.item():.4g}, {hi.item():.4g}]; regularize the output of the sigmoid, "
                "not the pre-activation."
            )
        return x.reshape(-1, x.shape[-1]).mean(0)  # (units,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rho = self.target
        q = self._rho_hat(x).clamp(_CLAMP, 1.0 - _CLAMP)
        kl = rho * (math.log(rho) - q.log()) + (1 - rho) * (math.log1p(-rho) - torch.log1p(-q))
        return self.coefficient * kl.sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        rho = self.target
        q = self._rho_hat(x)
        inside = (q >= _CLAMP) & (q <= 1.0 - _CLAMP)  # clamp passes no gradient outside
        q = q.clamp(_CLAMP, 1.0 - _CLAMP)
        g_q = self.coefficient * (-rho / q + (1 - rho) / (1 - q)) * inside
        n_rows = x.numel() // x.shape[-1]
        return (g_q / n_rows).to(x.dtype).expand(x.shape).contiguous()

    def get_config(self) -> dict[str, Any]:
        return {"target": self.target, "coefficient": self.coefficient}


@registry.register("temporal_difference", "tar")
class TemporalDifference(Penalty):
    """Temporal activation regularization (TAR): ``coefficient * mean((h[t+1] - h[t])**2)``.

    The form of AWD-LSTM (Merity et al., 2017): the mean over every element of the difference
    along ``time_dim``, applied to the RNN's *undropped* output. Slows hidden-state changes
    between consecutive steps. The value is already a mean (``batch_normalized``), so
    ``reglab.attach`` does not divide it by the batch size again.

    Args:
        coefficient: AWD-LSTM's ``beta``, a finite number >= 0. Default 1.0 (AWD-LSTM's).
        time_dim: the time dimension of the activation. Default 0, ``nn.LSTM``'s layout
            ``(T, B, H)``; use 1 for ``batch_first=True``.

    Shape:
        Any tensor with at least 2 steps along ``time_dim``. Returns a 0-dim tensor.

    >>> TemporalDifference(1.0, time_dim=0)(torch.tensor([[0.0], [2.0]]))
    tensor(4.)
    """

    batch_normalized = True
    coefficient = Checked(check_coefficient)

    def __init__(self, coefficient: float = 1.0, time_dim: int = 0) -> None:
        self.coefficient = coefficient
        if isinstance(time_dim, bool) or not isinstance(time_dim, int):
            raise invalid("time_dim", "TemporalDifference", "an int", time_dim)
        self.time_dim = time_dim

    def _diff(self, x: torch.Tensor) -> torch.Tensor:
        if not -x.ndim <= self.time_dim < x.ndim or x.shape[self.time_dim] < 2:
            raise ValueError(
                f"TemporalDifference(time_dim={self.time_dim}) needs at least 2 steps along "
                f"that dimension. Got shape {tuple(x.shape)}."
            )
        return torch.diff(x, dim=self.time_dim)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.coefficient * self._diff(x).square().mean()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        d = self._diff(x)
        g_d = d.mul(2.0 * self.coefficient / d.numel())  # (.., T-1, ..)
        g = torch.zeros_like(x)
        n = x.shape[self.time_dim]
        # h[t+1] - h[t]: +g_d flows to steps 1..T-1, -g_d to steps 0..T-2.
        g.narrow(self.time_dim, 1, n - 1).add_(g_d)
        g.narrow(self.time_dim, 0, n - 1).sub_(g_d)
        return g

    def get_config(self) -> dict[str, Any]:
        return {"coefficient": self.coefficient, "time_dim": self.time_dim}
