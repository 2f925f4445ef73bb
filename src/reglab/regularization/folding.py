"""Weight penalties folded into an optimizer's step (``Regularization.fold_into``).

Two ways to add ``∇penalty(w)`` to ``p.grad`` inside ``optimizer.step()``:

* **Eager** (the default): a step pre-hook adds it with in-place multi-tensor ops just before
  the optimizer reads the gradients. One extra pass over the penalised parameters and their
  gradients, separate from the optimizer's own.
* **Compiled** (``compile=True``): the penalty's gradient and the optimizer's update are
  compiled together (``torch.compile``), so the compiler fuses the gradient into the update's
  loop over each parameter: one pass over memory for both. The optimizer's ``step`` is
  replaced on the instance (as an LR scheduler does) by one that runs the same step
  pre-/post-hooks around the compiled update; ``remove()`` restores it. A ``closure`` (LBFGS,
  Lightning) takes the eager path, since it computes the gradients inside ``step``.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import torch

from reglab._internals.compat import COMPILED_FOLD
from reglab._internals.torch import unwrapped_step
from reglab._validation import InvalidParameterError
from reglab.regularization.weights import WeightPenalties

__all__ = ["FoldHandle"]


class FoldHandle:
    """Returned by ``Regularization.fold_into``: the weight penalties' gradients are added in
    ``optimizer``'s step until ``remove()`` (or the end of its ``with`` block), which takes the
    hook off (and restores a compiled optimizer's ``step``) and returns the weights to the
    loss path."""

    def __init__(
        self,
        weights: WeightPenalties,
        optimizer: torch.optim.Optimizer,
        compile: bool,
        on_remove: Callable[[], None],
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.optimizer = optimizer
        if compile:  # before any hook is registered: a refused fold leaves nothing behind
            self._check_compilable()
        self._check = check  # raises if the model changed since attach
        self._weights = weights
        self._on_remove: Callable[[], None] | None = on_remove
        self._fusing = False  # the compiled update adds the gradients itself
        self._active = True
        self._hook = optimizer.register_step_pre_hook(self._pre_hook)
        self._replaced: Any = None  # the instance's own ``step`` before compile=True, if any
        self._installed: Any = None  # the ``step`` compile=True put there
        if compile and not COMPILED_FOLD:
            warnings.warn(
                f"reglab: fold_into(compile=True) needs torch >= 2.13 (on older torches the "
                f"compiled update trains wrongly); torch {torch.__version__} takes the eager "
                "fold, which trains the same, with one extra pass over the parameters.",
                RuntimeWarning,
                stacklevel=3,
            )
        elif compile:
            self._compile_step()

    def _add(self) -> None:
        self._check()
        scale = getattr(self.optimizer, "grad_scale", None)  # a fused optimizer divides it out
        self._weights.add_gradients_(1.0 if scale is None else scale)

    def _pre_hook(self, _opt: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._fusing:
            return None
        # args[0] is the optimizer. A closure (Lightning, LBFGS) computes the gradients
        # inside step(), after this hook: add the penalty's right after each evaluation.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._add()
            return None

        def closure_with_penalty() -> Any:
            with torch.enable_grad():
                loss = closure()
            self._add()
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_with_penalty}
        return (args[0], closure_with_penalty, *args[2:]), kwargs

    def _check_compilable(self) -> None:
        optimizer = self.optimizer
        for flag in ("fused", "differentiable"):
            if optimizer.defaults.get(flag):
                raise InvalidParameterError(
                    f"fold_into(compile=True) compiles {type(optimizer).__name__}'s update "
                    f"together with the penalty's gradient; an optimizer with {flag}=True "
                    "cannot be compiled that way. Fold it without compile=True."
                )

    def _compile_step(self) -> None:
        optimizer, weights = self.optimizer, self._weights
        # The update itself, without torch's wrappers (hooks, grad mode, and a graph break
        # that would put the penalty's gradient in a graph of its own).
        update = unwrapped_step(type(optimizer))

        def penalised_update(opt: torch.optim.Optimizer) -> Any:
            weights.add_gradients_(1.0)
            return update(opt)

        compiled = torch.compile(penalised_update)

        def run(opt: torch.optim.Optimizer, closure: Any = None) -> Any:
            del closure  # always None here
            with torch.no_grad():
                return compiled(opt)

        hooked = torch.optim.Optimizer.profile_hook_step(run)  # pre-hooks, run, post-hooks
        eager = optimizer.step  # the class's step (or an LR scheduler's wrapper of it)
        fold = self

        def step(opt: torch.optim.Optimizer, closure: Any = None) -> Any:
            if closure is not None or not fold._active:
                return eager(closure)
            fold._check()
            opt._opt_called = True  # type: ignore[attr-defined]  # what LR schedulers check
            weights.refresh()  # coefficients into the tensors the compiled update reads
            fold._fusing = True
            try:
                return hooked(opt)
            finally:
                fold._fusing = False

        if hasattr(eager, "_wrapped_by_lr_sched"):
            step._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
        self._replaced = optimizer.__dict__.get("step", _ABSENT)
        optimizer.step = types.MethodType(step, optimizer)  # type: ignore[method-assign]
        self._installed = optimizer.step

    def remove(self) -> None:
        self._hook.remove()
        self._active = False
        if self._replaced is not None and self.optimizer.__dict__.get("step") == self._installed:
            if self._replaced is _ABSENT:
                del self.optimizer.step
            else:
                self.optimizer.step = self._replaced  # type: ignore[method-assign]
        self._replaced = None
        if self._on_remove is not None:
            self._on_remove()
            self._on_remove = None

    def __enter__(self) -> FoldHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


_ABSENT = object()
