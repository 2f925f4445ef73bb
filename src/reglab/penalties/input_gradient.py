"""Input-gradient penalties by double backpropagation: the gradient of the loss with respect
to the input (Drucker & LeCun 1992; Ross & Doshi-Velez 2018) and the input-output Jacobian
(Hoffman, Roberts & Yaida 2019)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import (
    InvalidParameterError,
    check_choice,
    check_coefficient,
    check_positive_int,
)

__all__ = ["InputGradient"]

TARGETS = ("loss", "jacobian")


class InputGradient:
    """``coefficient · mean_i ‖∂ℓ_i/∂x_i‖²`` (``target="loss"``) or
    ``coefficient · mean_i ‖J_i‖_F²`` with ``J_i = ∂f(x_i)/∂x_i`` (``target="jacobian"``).

    Both are computed by double backpropagation (``create_graph=True``), so the penalty's own
    gradient reaches the weights: each step costs roughly one more backward pass through the
    model, twice as deep.

    * ``"loss"`` — ``penalty(x, loss)`` with ``loss`` the batch **mean** of per-example losses
      ``ℓ_i``: then ``∂loss/∂x_i = ∂ℓ_i/∂x_i / N`` and the value is
      ``coefficient · N · ‖∂loss/∂x‖²`` = ``coefficient · mean_i ‖∂ℓ_i/∂x_i‖²``.
    * ``"jacobian"`` — ``penalty(x, output)`` with ``output`` the ``(N, C)`` network output:
      Hoffman et al.'s estimator ``‖J_i‖_F² ≈ (C / n_projections) · Σ_μ ‖v_μᵀ J_i‖²`` with
      ``v_μ`` uniform on the unit sphere of ``R^C``, one vector-Jacobian product per
      projection; unbiased, and ``n_projections=None`` is exact (``C`` products, one-hot
      ``v``). (Hoffman et al. write ``λ/2 · ‖J‖_F²``; here there is no ½.)

    Rows must be independent (no BatchNorm in training mode mixing the batch), as for any
    per-example gradient. ``x`` must require grad before the forward: ``x.requires_grad_()``,
    or :meth:`loss_for`, which does it with a forward pre-hook and so works as ``fit``'s loss.

    **Composition.** It is added to the loss like ``reg.penalty()`` from ``reglab.attach``
    (independent of it; a weight penalty's gradient is unaffected); ``fold_into`` does not apply
    (it needs the input). **AMP**: pass ``scaler=`` (a ``GradScaler``): the input gradient is
    taken of the scaled loss and unscaled, as torch's AMP guide does for gradient penalties.
    **Gradient accumulation**: per micro-batch, like the loss. **torch.compile**: double
    backward through a compiled model is not supported by torch's AOTAutograd; use it eager.

    Not in the penalty registry: it takes ``(x, loss)``, not one tensor, so it cannot be a
    weight or activity rule of ``attach``.

    Args:
        coefficient: λ >= 0. Default 0.01.
        target: ``"loss"`` or ``"jacobian"``.
        n_projections: random projections for ``"jacobian"`` (an int >= 1), or None for the
            exact Frobenius norm. Default 1 (Hoffman et al. found one enough).
        generator: a ``torch.Generator`` for the projections (on ``x``'s device).

    >>> net = nn.Linear(3, 2)
    >>> x = torch.randn(4, 3, requires_grad=True)
    >>> loss = F.cross_entropy(net(x), torch.tensor([0, 1, 0, 1]))
    >>> penalty = InputGradient(0.1)(x, loss)
    >>> (loss + penalty).backward()  # double backward: the penalty's gradient reaches net
    """

    def __init__(
        self,
        coefficient: float = 0.01,
        target: str = "loss",
        n_projections: int | None = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        self.coefficient = check_coefficient(coefficient, "coefficient", "InputGradient")
        self.target = check_choice(target, "target", "InputGradient", TARGETS)
        if n_projections is not None:
            check_positive_int(n_projections, "n_projections", "InputGradient")
        self.n_projections = n_projections
        self.generator = generator

    def _grad(self, out: torch.Tensor, x: torch.Tensor, scaler: Any) -> torch.Tensor:
        if not x.requires_grad:
            raise InvalidParameterError(
                "InputGradient needs the input to require grad before the forward pass: call "
                "x.requires_grad_() first, or use InputGradient.loss_for(model, loss)."
            )
        if scaler is not None:
            (g,) = torch.autograd.grad(scaler.scale(out), x, create_graph=True)
            return g * (1.0 / scaler.get_scale())
        (g,) = torch.autograd.grad(out, x, create_graph=True)
        return g

    def __call__(
        self, x: torch.Tensor, output: torch.Tensor, *, scaler: Any = None
    ) -> torch.Tensor:
        n = x.shape[0]
        if self.target == "loss":
            if output.ndim != 0:
                raise InvalidParameterError(
                    "InputGradient(target='loss') takes the batch-mean loss (a 0-dim tensor). "
                    f"Got a tensor of shape {tuple(output.shape)}."
                )
            g = self._grad(output, x, scaler)  # (N, *x) = ∂ℓ_i/∂x_i / N
            return self.coefficient * n * g.square().sum()
        flat = output.reshape(n, -1)  # (N, C)
        c = flat.shape[1]
        if self.n_projections is None:  # exact: one-hot v, C vector-Jacobian products
            total = sum(self._grad(flat[:, k].sum(), x, scaler).square().sum() for k in range(c))
            return self.coefficient * total / n
        total = flat.new_zeros(())
        for _ in range(self.n_projections):
            v = torch.randn(flat.shape, generator=self.generator, device=flat.device)
            v = F.normalize(v.to(flat.dtype), dim=1)  # (N, C), unit rows
            vjp = self._grad((flat * v).sum(), x, scaler)  # row i: v_iᵀ J_i
            total = total + vjp.square().sum()
        return self.coefficient * (c / self.n_projections) * total / n

    def loss_for(
        self, model: nn.Module, loss: Callable[[torch.Tensor, Any], torch.Tensor] = F.cross_entropy
    ) -> _InputGradientLoss:
        """A ``loss(output, y)`` for ``fit`` (or any loop) that adds this penalty: a forward
        pre-hook on ``model`` makes each training input require grad and keeps it. In
        ``eval()`` mode or under ``no_grad`` it is ``loss(output, y)``; ``remove()`` drops the
        hook."""
        return _InputGradientLoss(self, model, loss)

    def get_config(self) -> dict[str, Any]:
        return {
            "coefficient": self.coefficient,
            "target": self.target,
            "n_projections": self.n_projections,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> InputGradient:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"InputGradient({args})"


class _InputGradientLoss:
    """What :meth:`InputGradient.loss_for` returns."""

    def __init__(self, penalty: InputGradient, model: nn.Module, loss: Callable) -> None:
        self.penalty, self.loss, self.model = penalty, loss, model
        self._x: torch.Tensor | None = None
        self._hook = model.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not (module.training and torch.is_grad_enabled()) or not args:
            self._x = None
            return None
        x = args[0]
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not x.requires_grad:
            x = x.detach().requires_grad_(True)
            self._x = x
            return (x, *args[1:])
        self._x = x if isinstance(x, torch.Tensor) and x.requires_grad else None
        return None

    def __call__(self, output: torch.Tensor, y: Any) -> torch.Tensor:
        data = self.loss(output, y)
        x, self._x = self._x, None
        if x is None:
            return data
        target = data if self.penalty.target == "loss" else output
        return data + self.penalty(x, target)

    def remove(self) -> None:
        self._hook.remove()
