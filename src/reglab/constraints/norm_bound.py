"""A norm bound solved as a constraint with a Lagrange multiplier (Deep Learning book §7.2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from reglab._validation import Checked, check_choice, check_coefficient, invalid

__all__ = ["NormBound"]


class NormBound:
    """Enforce ``Ω(θ) <= max_norm`` through the Lagrangian ``L(θ) + α · (Ω(θ) − max_norm)``.

    The parameters descend the Lagrangian (add ``penalty`` to the loss); the multiplier
    ascends it by projected dual ascent after every optimizer step (``step``)::

        α ← max(0, α + lr_dual · (Ω(θ) − max_norm))

    so α grows while the bound is violated and decays to 0 when it is slack. At convergence α is
    the KKT multiplier: for ``norm="l2"`` the solution equals ridge regression with
    ``λ = α / (2 · max_norm)``. Unlike a projection (``MaxNorm``), the parameters may leave
    the feasible set during training; unlike a fixed penalty, no coefficient has to be tuned to
    hit a given norm.

    Ω is taken over all ``params`` together: ``"l2"`` is ``sqrt(Σ θ²)``, ``"l1"`` is ``Σ|θ|``.

    Args:
        params: the tensors to bound (e.g. ``model.parameters()``), consumed once.
        max_norm: the bound ``k``, a finite number >= 0.
        norm: ``"l2"`` (default) or ``"l1"``.
        lr_dual: dual step size η > 0.
        multiplier: initial α >= 0. Default 0.

    >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> bound = NormBound([w], max_norm=1.0, lr_dual=0.5)
    >>> bound.step()  # Ω = 5 > 1: α = 0 + 0.5 * 4
    2.0
    >>> bound.penalty()
    tensor(8., grad_fn=<MulBackward0>)
    """

    max_norm = Checked(check_coefficient)

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        max_norm: float,
        norm: str = "l2",
        lr_dual: float = 0.1,
        multiplier: float = 0.0,
    ) -> None:
        self.params = list(params)
        if not self.params or not all(isinstance(p, torch.Tensor) for p in self.params):
            raise invalid("params", "NormBound", "a non-empty iterable of tensors", self.params)
        self.max_norm = check_coefficient(max_norm, "max_norm", "NormBound")
        self.norm_type = check_choice(norm, "norm", "NormBound", ("l2", "l1"))
        self.lr_dual = check_coefficient(lr_dual, "lr_dual", "NormBound")
        if self.lr_dual == 0.0:
            raise invalid("lr_dual", "NormBound", "a finite number > 0", lr_dual)
        self._multiplier = check_coefficient(multiplier, "multiplier", "NormBound")

    @property
    def multiplier(self) -> float:
        """The current Lagrange multiplier α >= 0."""
        return self._multiplier

    def norm(self) -> torch.Tensor:
        """Ω(θ) as a differentiable 0-dim tensor."""
        # vector_norm's backward is 0 at θ = 0, where d sqrt(Σθ²) would be 0 · inf = NaN.
        order = 2 if self.norm_type == "l2" else 1
        per_tensor = [torch.linalg.vector_norm(p, order) for p in self.params]
        return torch.linalg.vector_norm(torch.stack(per_tensor), order)

    def penalty(self) -> torch.Tensor:
        """``α · (Ω(θ) − max_norm)``, to add to the loss (α is a constant here).

        While α is 0 the term is a constant 0 (no graph is built)."""
        if self._multiplier == 0.0:
            return torch.zeros((), device=self.params[0].device)
        return self._multiplier * (self.norm() - self.max_norm)

    def terms(self) -> dict[str, torch.Tensor]:
        """``{"norm": Ω, "multiplier": α}`` (detached), for logging."""
        with torch.no_grad():
            norm = self.norm()
        return {"norm": norm, "multiplier": torch.tensor(self._multiplier)}

    @torch.no_grad()
    def step(self) -> float:
        """One projected dual-ascent update of α; returns the new α."""
        violation = float(self.norm()) - self.max_norm
        self._multiplier = max(0.0, self._multiplier + self.lr_dual * violation)
        return self._multiplier

    def after_step(self) -> None:
        """Called by ``reglab.training.fit`` after every optimizer step."""
        self.step()

    def state_dict(self) -> dict[str, Any]:
        return {"multiplier": self._multiplier}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._multiplier = check_coefficient(state["multiplier"], "multiplier", "NormBound")

    def __repr__(self) -> str:
        return (
            f"NormBound(max_norm={self.max_norm}, norm={self.norm_type!r}, "
            f"lr_dual={self.lr_dual}, multiplier={self._multiplier:.4g})"
        )
