"""Sharpness-aware minimization (SAM, Foret et al. 2021) and its adaptive form (ASAM, Kwon et
al. 2021) as a wrapper around any torch optimizer.

SAM minimises ``max_{‖ε‖ ≤ ρ} L(w + ε)``. One step, with ``g = ∇L(w)``:

    ε = ρ · g / ‖g‖₂                              (SAM; the norm over every perturbed tensor)
    ε = ρ · T² g / ‖T g‖₂,  T = |w| + η            (ASAM, elementwise; η = 0 as in most code)
    w ← base_step(w, ∇L(w + ε))                    (the gradient at the perturbed point)

so every step costs two forward-backward passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from reglab._validation import InvalidParameterError, check_coefficient, invalid

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimization around ``base_optimizer`` (SAM, or ASAM with
    ``adaptive=True``).

    ``step(closure)`` expects the gradients at the current weights ``w`` to be computed
    already (``loss.backward()`` as usual); it moves to ``w + ε`` (formulas in the module
    docstring), zeroes the gradients, calls ``closure`` — which must recompute the loss
    *including any penalty* (``reg.penalty()``: its gradient is then taken at ``w + ε``, as
    the paper's loss includes it) and call ``backward()`` — restores ``w`` and lets the base
    optimizer step with the gradient from ``w + ε``. ``first_step()`` / ``second_step()`` are
    the two halves, for loops that need them apart.

    **Param groups.** The parameter groups are the base optimizer's (shared, so LR schedulers
    and ``reglab.param_groups`` work); a group's ``"rho"``, ``"adaptive"`` and ``"eta"``
    override the defaults, and a group with ``rho=0`` is neither perturbed nor counted in
    ``‖g‖`` (e.g. keep biases and norms out, as some ViT recipes do).

    **AMP.** With a ``torch.amp.GradScaler``, call ``loss`` backward through
    ``scaler.scale(loss)``, then ``step(closure, scaler=scaler)`` (the closure too uses
    ``scaler.scale(loss).backward()``), then ``scaler.update()``: the gradients are unscaled
    before ε is computed, a step whose first gradient is not finite is skipped (no
    perturbation, no closure call, the scale shrinks), and the second gradient goes through
    ``scaler.step(base_optimizer)``, which skips the update if *it* is not finite.

    **Gradient accumulation**: accumulate the first gradient over the micro-batches as usual;
    the closure must then accumulate over the same micro-batches. **torch.compile**: compile
    the model (both passes use it); ``step`` itself runs eagerly. **BatchNorm**: the second
    pass updates the running statistics again; put BatchNorm layers in ``eval()`` inside the
    closure if that matters (davda54/sam's ``disable_running_stats``).

    Args:
        params: parameters or parameter groups.
        base_optimizer: an optimizer class (``torch.optim.SGD``), built here on the same
            groups with ``base_kwargs``.
        rho: radius ρ >= 0 of the neighbourhood. Default 0.05 (the paper's; ASAM uses ~10×
            larger, e.g. 0.5 or 2.0).
        adaptive: ASAM's scale-invariant neighbourhood.
        eta: ASAM's η in ``T = |w| + η`` (0: davda54/sam's form; Kwon et al. use 0.01).

    >>> model = torch.nn.Linear(3, 1)
    >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
    >>> optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    >>> def closure():
    ...     loss = torch.nn.functional.mse_loss(model(x), y)
    ...     loss.backward()
    ...     return loss
    >>> loss = closure()  # gradients at w
    >>> _ = optimizer.step(closure)  # gradients at w + ε, then SGD's step
    """

    #: ``fit`` passes a closure that recomputes the loss to optimizers that set this.
    requires_closure = True

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        **base_kwargs: Any,
    ) -> None:
        rho = check_coefficient(rho, "rho", "SAM")
        eta = check_coefficient(eta, "eta", "SAM")
        if not (
            isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise invalid("base_optimizer", "SAM", "a torch.optim.Optimizer class", base_optimizer)
        super().__init__(params, dict(rho=rho, adaptive=bool(adaptive), eta=eta, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # One set of groups and one state (momentum buffers ...), so schedulers and
        # state_dict() see the base optimizer's.
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)
        self._old: dict[torch.Tensor, torch.Tensor] = {}  # w while the weights are w + ε

    # -- the two halves --------------------------------------------------------------------
    def _perturbed(self) -> list[tuple[dict[str, Any], torch.Tensor]]:
        return [
            (group, p)
            for group in self.param_groups
            if group["rho"] > 0
            for p in group["params"]
            if p.grad is not None
        ]

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """``‖g‖₂`` (SAM) or ``‖T g‖₂`` (ASAM) over the perturbed parameters."""
        pairs = self._perturbed()
        if not pairs:
            return torch.zeros(())
        device = pairs[0][1].device
        norms = [
            ((p.abs() + group["eta"]) * p.grad if group["adaptive"] else p.grad).norm(2).to(device)
            for group, p in pairs
        ]
        return torch.stack(norms).norm(2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """``w ← w + ε`` (remembering ``w``), then zero the gradients."""
        scale_norm = self.grad_norm()
        for group, p in self._perturbed():
            scale = group["rho"] / (scale_norm.to(p.device) + 1e-12)
            t2 = (p.abs() + group["eta"]).square() if group["adaptive"] else 1.0
            e_w = p.grad * t2 * scale.to(p.dtype)
            self._old[p] = p.detach().clone()
            p.add_(e_w)
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self) -> None:
        """``w + ε ← w``: undo ``first_step`` (its gradients stay)."""
        for p, old in self._old.items():
            p.copy_(old)
        self._old.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and take the base optimizer's step with the current gradients."""
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    # -- one SAM step ----------------------------------------------------------------------
    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], Any] | None = None, *, scaler: Any = None
    ) -> Any:
        """One SAM step: ``first_step``, ``closure()`` at ``w + ε``, ``second_step``. Returns
        the closure's loss (at ``w + ε``), or None when AMP skipped the step."""
        if closure is None:
            raise InvalidParameterError(
                "SAM.step needs a closure that recomputes the loss and calls backward() (the "
                "second forward-backward pass, at the perturbed weights)."
            )
        closure = torch.enable_grad()(closure)
        if scaler is not None:
            scaler.unscale_(self)  # ε is computed from the true gradient
            grads = [p.grad for _, p in self._perturbed()]
            if grads and not bool(torch.stack([g.isfinite().all() for g in grads]).all()):
                return None  # scaler.update() sees the inf recorded by unscale_ and shrinks
        self.first_step(zero_grad=True)
        loss = closure()
        if scaler is None:
            self.second_step()
        else:
            self.restore()
            scaler.step(self.base_optimizer)  # unscales the new gradients, skips on inf
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups
        self.base_optimizer.state = self.state

    def __repr__(self) -> str:
        group = self.param_groups[0] if self.param_groups else {}
        rho, adaptive = group.get("rho", math.nan), group.get("adaptive", False)
        return f"SAM({type(self.base_optimizer).__name__}, rho={rho}, adaptive={adaptive})"
