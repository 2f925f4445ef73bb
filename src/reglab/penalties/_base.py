"""The abstract penalty: a small callable ``penalty(tensor) -> scalar tensor``."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch

from reglab._registry import Registry

__all__ = ["Penalty", "registry"]

registry: Registry[Penalty] = Registry("penalty")


class Penalty(abc.ABC):
    """Base class of reglab's built-in penalties.

    A penalty maps a tensor to a scalar tensor that is added to the loss. ``__init__`` stores
    hyperparameters only; ``get_config()`` returns exactly the constructor arguments and
    ``from_config(config)`` rebuilds an equal penalty (Keras' serialization contract).

    Built-in penalties also know their **closed-form gradient** (``gradient``).
    ``reglab.attach`` uses it to fold every penalty of a model into a single autograd node
    that computes values without recording a graph and writes ``grad_output * gradient`` in
    backward. ``__call__`` is an ordinary differentiable torch expression, so calling a penalty
    directly behaves like any other loss term.

    Any user callable ``f(tensor) -> scalar tensor`` can be used wherever a penalty is accepted;
    it simply takes the ordinary autograd path.
    """

    #: ``True`` for penalties whose value is already normalised over the batch (a mean over
    #: samples, e.g. ``KLSparsity``, ``TemporalDifference``). ``reglab.attach``
    #: applies no activity reduction to them, so the batch size is not divided out twice.
    batch_normalized: ClassVar[bool] = False

    #: ``True`` for penalties defined on a weight's output units (its rows in PyTorch's
    #: ``(out, in)`` layout, e.g. ``Orthogonal``). ``reglab.attach`` hands them the
    #: tensor as ``(units, ...)`` following the module's layout (``reglab.layouts``), so
    #: ``ConvTranspose`` and ``transformers``' ``Conv1D`` kernels mean the same thing.
    per_unit: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return the penalty of ``x`` as a 0-dim tensor (differentiable)."""

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``d penalty(x) / d x`` in closed form, same shape and dtype as ``x``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form gradient")

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(penalty(x), gradient(x))`` without recording a graph; the gradient is a fresh
        tensor the caller may modify in place. Subclasses override it to share work (and
        allocations) between the two."""
        with torch.no_grad():
            return self(x), self.gradient(x)

    def add_gradient_(self, grad: torch.Tensor, x: torch.Tensor, factor: Any = 1.0) -> None:
        """``grad += factor · gradient(x)`` in place (``factor`` a number or a 0-dim
        tensor); for penalties folded into an optimizer step. Subclasses override it to skip
        the fresh gradient tensor."""
        extra = self.gradient(x)
        if isinstance(factor, torch.Tensor):
            grad.add_(extra.mul_(factor))
        else:
            grad.add_(extra, alpha=factor)

    def has_closed_form(self) -> bool:
        """Whether ``gradient`` may be used instead of autograd for this instance."""
        return type(self).gradient is not Penalty.gradient

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a dict."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Penalty:
        """Rebuild a penalty from ``get_config``'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.get_config(), other.get_config()  # type: ignore[attr-defined]
        return all(
            torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
            for a, b in zip(mine.values(), theirs.values(), strict=True)
        )

    __hash__ = object.__hash__
