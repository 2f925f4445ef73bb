"""What a kernel is, and how a weight tensor lays out its output units — one definition for
the whole package.

**Kernels.** A module's own trainable parameter is a *kernel* when it has at least 2 dimensions
and its attribute name contains ``weight``: ``Linear.weight``, ``ConvNd.weight``,
``nn.LSTM``'s ``weight_ih_l0`` / ``weight_hh_l0``, ``nn.MultiheadAttention``'s
``in_proj_weight``, ``Embedding.weight``, ``transformers``' ``Conv1D.weight``. A parameter whose
name contains ``bias`` is a *bias*. Normalization scales (1-D ``weight``) are neither.

**Unit layouts.** Per-unit rules — max-norm and the other norm constraints, the orthogonality
penalty's rows, the lab's largest unit norm — work on each *output unit's incoming weights*.
Where those sit depends on the module, not on the tensor:

=============================================  ===============================  =============
module                                         weight shape                     output unit
=============================================  ===============================  =============
``Linear``, ``ConvNd``, ``Bilinear``           ``(out, in, *k)``                dim 0
``Embedding``, ``EmbeddingBag``                ``(num, dim)``                   dim 0 (a row)
``RNN`` / ``LSTM`` / ``GRU``                   ``(gates * hidden, in)``         dim 0 (a row)
``ConvTransposeNd``                            ``(in, out / groups, *k)``       dim 1, per group
``transformers.pytorch_utils.Conv1D``          ``(in, out)``                    dim -1
anything else (the documented default)         ``(out, ...)``                   dim 0
=============================================  ===============================  =============

``register_layout`` adds a module type (or a ``"package.module.Class"`` name, so optional
third-party packages need not be imported). 1-D tensors are one unit.

>>> from torch import nn
>>> layout = unit_layout(nn.ConvTranspose2d(3, 4, 2), "weight")
>>> tuple(layout.to_units(torch.zeros(3, 4, 2, 2)).shape)  # (units, fan-in ...)
(4, 3, 2, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from reglab._validation import InvalidParameterError

__all__ = [
    "UnitLayout",
    "is_bias",
    "is_kernel",
    "named_kernels",
    "register_layout",
    "unit_layout",
]


def is_kernel(name: str, tensor: torch.Tensor) -> bool:
    """Whether a module's own parameter ``name`` (its attribute name, not the dotted path) is a
    kernel: at least 2 dimensions and ``weight`` in the name."""
    return tensor.ndim >= 2 and "weight" in name


def is_bias(name: str, tensor: torch.Tensor) -> bool:
    """Whether a module's own parameter ``name`` is a bias (``bias`` in the name)."""
    del tensor
    return "bias" in name


def named_kernels(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, nn.Parameter]]:
    """``(dotted name, owning module, attribute, parameter)`` for every kernel of ``model``
    (trainable or not), each parameter once, in ``named_modules()`` order."""
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        for attr, param in module.named_parameters(recurse=False):
            if is_kernel(attr, param) and id(param) not in seen:
                seen.add(id(param))
                yield (f"{prefix}.{attr}" if prefix else attr), module, attr, param


@dataclass(frozen=True)
class UnitLayout:
    """Where a weight tensor's output units are: dimension ``out_dim``, in ``groups`` blocks.

    ``groups > 1`` describes a grouped transposed convolution, whose weight is
    ``(in, out / groups, *k)``: output unit ``g * (out / groups) + j`` reads the input channels
    of group ``g`` only, i.e. ``weight[g * in/groups : (g+1) * in/groups, j]``.
    """

    out_dim: int = 0
    groups: int = 1
    #: a :class:`~reglab.ensembles.ModelStack`'s stacked weight ``(K, out, ...)``: every
    #: member's units are units (``out_dim`` counts within a member)
    stacked: bool = False

    def __post_init__(self) -> None:
        if self.stacked and self.groups != 1:
            raise InvalidParameterError("UnitLayout(stacked=True) takes groups=1.")

    def to_units(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` rearranged to ``(units, ...)``: entry ``i`` holds unit ``i``'s incoming
        weights (a view when the layout allows one). 1-D tensors become ``(1, n)``."""
        if self.stacked:  # (K, *member's shape); a member's bias (K, out) is one unit each
            if w.ndim <= 2:
                return w.reshape(w.shape[0], -1)
            return w.movedim(self.out_dim + 1, 1).flatten(0, 1)
        if w.ndim < 2:
            return w.reshape(1, -1)
        if self.groups == 1:
            return w.movedim(self.out_dim, 0)
        g = self.groups
        blocks = w.reshape(g, w.shape[0] // g, *w.shape[1:])  # (G, in/G, out/G, *k)
        return blocks.movedim(2, 1).reshape(g * w.shape[1], w.shape[0] // g, *w.shape[2:])

    def from_units(self, u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_units``: ``u`` back in the layout (and shape) of ``like``."""
        if self.stacked:
            if like.ndim <= 2:
                return u.reshape(like.shape)
            return u.reshape(like.movedim(self.out_dim + 1, 1).shape).movedim(1, self.out_dim + 1)
        if like.ndim < 2:
            return u.reshape(like.shape)
        if self.groups == 1:
            return u.movedim(0, self.out_dim)
        g = self.groups
        blocks = u.reshape(g, like.shape[1], like.shape[0] // g, *like.shape[2:])
        return blocks.movedim(1, 2).reshape(like.shape)


_DEFAULT = UnitLayout()
LayoutRule = Callable[[nn.Module, str], UnitLayout]
_BY_TYPE: dict[type[nn.Module], LayoutRule] = {}
_BY_NAME: dict[str, LayoutRule] = {}


def register_layout(module_type: type[nn.Module] | str, layout: UnitLayout | LayoutRule) -> None:
    """Declare the unit layout of a module type's kernels.

    Args:
        module_type: an ``nn.Module`` subclass, or its qualified name
            (``"transformers.pytorch_utils.Conv1D"``) to avoid importing an optional package.
            Subclasses inherit the layout.
        layout: a ``UnitLayout``, or ``rule(module, param_name) -> UnitLayout`` when it
            depends on the instance (``groups``) or on the parameter.
    """
    rule: LayoutRule = layout if callable(layout) else (lambda _m, _n, _l=layout: _l)
    if isinstance(module_type, str):
        _BY_NAME[module_type] = rule
    elif isinstance(module_type, type) and issubclass(module_type, nn.Module):
        _BY_TYPE[module_type] = rule
    else:
        raise InvalidParameterError(
            "The 'module_type' parameter of register_layout must be an nn.Module subclass or "
            f"a qualified class name. Got {module_type!r} instead."
        )


def unit_layout(module: nn.Module, param_name: str) -> UnitLayout:
    """The ``UnitLayout`` of ``module``'s parameter ``param_name`` (the default — output
    units along dim 0 — for modules nobody registered)."""
    for cls in type(module).__mro__:
        rule = _BY_TYPE.get(cls)  # type: ignore[arg-type]
        if rule is None:
            rule = _BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")
        if rule is not None:
            return rule(module, param_name)
    return _DEFAULT


def _transposed_conv(module: nn.Module, param_name: str) -> UnitLayout:
    if param_name != "weight":
        return _DEFAULT
    return UnitLayout(out_dim=1, groups=getattr(module, "groups", 1))


register_layout(nn.modules.conv._ConvTransposeNd, _transposed_conv)
register_layout("transformers.pytorch_utils.Conv1D", UnitLayout(out_dim=-1))
