"""Penalties toward a reference tensor: L2-SP and soft parameter tying."""

from __future__ import annotations

from typing import Any

import torch

from reglab._validation import Checked, check_coefficient, invalid
from reglab.penalties._base import Penalty, registry

__all__ = ["ToReference"]


@registry.register()
class ToReference(Penalty):
    """``l2 * sum((x - reference)**2)``: pull a tensor toward a reference instead of toward 0.

    Two uses (Deep Learning book §7.7; Li et al. 2018, "L2-SP"):

    * **Fine-tuning**: ``reference`` is a frozen copy of the pre-trained weight
      (``w.detach().clone()``), so the network stays close to what it learned before.
    * **Soft parameter tying**: ``reference`` is another module's parameter (it requires
      grad), so *both* tensors are pulled toward each other. That case takes the ordinary
      autograd path (the closed-form fast path only knows ``d/dx``).

    The reference is kept by reference, not copied: later updates to it are seen.

    Args:
        reference: tensor of the same shape as the penalised tensor (no default: a registry
            string cannot build this penalty).
        l2: coefficient, a finite number >= 0. Default 0.01.

    >>> ToReference(torch.ones(2), l2=1.0)(torch.zeros(2))
    tensor(2.)
    """

    l2 = Checked(check_coefficient)

    def __init__(self, reference: torch.Tensor, l2: float = 0.01) -> None:
        if not isinstance(reference, torch.Tensor):
            raise invalid("reference", "ToReference", "a torch.Tensor", type(reference).__name__)
        self.reference = reference
        self.l2 = l2

    def _delta(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape != self.reference.shape:
            raise ValueError(
                f"ToReference got a tensor of shape {tuple(x.shape)} but its reference has "
                f"shape {tuple(self.reference.shape)}."
            )
        return x - self.reference

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2 * self._delta(x).square().sum()

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        return self._delta(x.detach()).mul_(2.0 * self.l2)

    def has_closed_form(self) -> bool:
        return not self.reference.requires_grad

    def get_config(self) -> dict[str, Any]:
        return {"reference": self.reference, "l2": self.l2}
