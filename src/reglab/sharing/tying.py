"""Parameter tying: hard (one tensor, two places) and soft toward a reference (L2-SP)."""

from __future__ import annotations

import fnmatch

import torch
from torch import nn
from torch.nn.utils import parametrize

import reglab
from reglab._validation import InvalidParameterError
from reglab.layouts import is_kernel
from reglab.penalties import ToReference
from reglab.regularization import Regularization

__all__ = ["l2_sp", "tie_weights"]


class _Transpose(nn.Module):
    """Parametrization ``W -> Wᵀ`` (the tied decoder of an autoencoder)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.transpose(0, 1)


def tie_weights(
    a: nn.Module, name_a: str, b: nn.Module, name_b: str, transpose: bool = False
) -> nn.Module:
    """Make ``b.<name_b>`` *be* ``a.<name_a>`` (or its transpose): hard parameter sharing.

    * ``transpose=False``: the same ``nn.Parameter`` object is registered in both modules, so
      there is one tensor, one gradient (the sum of both uses) and one optimizer state;
      ``model.parameters()`` lists it once. Shapes must match.
    * ``transpose=True``: ``b.<name_b>`` becomes ``a.<name_a>ᵀ`` through
      ``torch.nn.utils.parametrize`` (always current, differentiable); the tied autoencoder's
      decoder ``W_dec = W_encᵀ``. ``a``'s weight must be 2-D with the transposed shape.

    ``b``'s former parameter is discarded. ``state_dict`` keeps both names, holding the same
    values, and loads back consistently.

    Returns:
        ``b``.

    >>> enc, dec = nn.Linear(4, 2), nn.Linear(2, 4)
    >>> _ = tie_weights(enc, "weight", dec, "weight", transpose=True)
    >>> torch.equal(dec.weight, enc.weight.T)
    True
    """
    source = getattr(a, name_a, None)
    target = getattr(b, name_b, None)
    if not isinstance(source, nn.Parameter):
        raise InvalidParameterError(
            f"tie_weights: {type(a).__name__} has no parameter {name_a!r}. Its parameters: "
            f"{', '.join(n for n, _ in a.named_parameters(recurse=False))}."
        )
    if not isinstance(target, torch.Tensor):
        raise InvalidParameterError(f"tie_weights: {type(b).__name__} has no parameter {name_b!r}.")
    expected = source.T.shape if transpose else source.shape
    if transpose and source.ndim != 2:
        raise InvalidParameterError(
            f"tie_weights(transpose=True) needs a 2-D parameter; {name_a!r} has shape "
            f"{tuple(source.shape)}."
        )
    if target.shape != expected:
        raise InvalidParameterError(
            f"tie_weights: {name_b!r} has shape {tuple(target.shape)} but the tied tensor "
            f"would have shape {tuple(expected)}."
        )
    if not transpose:
        setattr(b, name_b, source)
        return b
    parametrize.register_parametrization(b, name_b, _Transpose(), unsafe=True)
    # Replace the parametrization's own copy by a's parameter: one tensor, two views.
    b.parametrizations[name_b].original = source
    return b


def l2_sp(model: nn.Module, l2: float, pattern: str = "*") -> Regularization:
    """L2-SP (Li et al. 2018): pull every kernel of ``model`` toward its *current* value.

    Call it on a trained (pre-trained) network before fine-tuning: each matched module's
    kernel ``w`` gets ``ToReference(w.detach().clone(), l2)``, i.e. ``l2 · Σ(w − w₀)²``,
    instead of decay toward zero — "regularize an already trained network". Biases and frozen
    parameters are left alone.

    Args:
        model: the network to fine-tune.
        l2: coefficient.
        pattern: glob over module names selecting which layers to anchor (``"backbone.*"``).

    Returns:
        the ``Regularization`` handle (add ``penalty()`` to the loss, or pass it to
        ``fit(regularization=...)``).
    """
    rules = {}
    for name, module in model.named_modules():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        kernels = [
            (n, p)
            for n, p in module.named_parameters(recurse=False)
            if is_kernel(n, p) and p.requires_grad
        ]
        if len(kernels) == 1:
            reference = kernels[0][1].detach().clone()
            rules[_literal(name)] = {"kernel": ToReference(reference, l2)}
        elif len(kernels) > 1:
            raise InvalidParameterError(
                f"l2_sp: module {name!r} ({type(module).__name__}) has several kernels "
                f"({', '.join(n for n, _ in kernels)}); anchor them one by one with "
                "ToReference."
            )
    if not rules:
        raise InvalidParameterError(f"l2_sp: pattern {pattern!r} matches no module with a kernel.")
    return reglab.attach(model, rules)


def _literal(name: str) -> str:
    """A glob that matches exactly ``name`` (escape fnmatch's special characters)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
