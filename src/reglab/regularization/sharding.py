"""Sharded parameters (``torch.distributed``'s ``DTensor``, e.g. under FSDP2's
``fully_shard``): what can be computed on a rank's local shard alone.

* **Elementwise penalties** (``L1``, ``L2``, ``L1L2``): the gradient of a shard is exactly the
  shard of the full gradient; values are summed over the mesh, so every rank reports the
  unsharded value.
* **Per-unit constraints** (``MaxNorm()`` and friends with the default axis): exact when every
  output unit lies in one shard — units along dim 0, sharded along dim 0 (FSDP2's layout for
  ``Linear`` and ``ConvNd``). Elementwise ``NonNeg`` works on any shard.
* Anything else needs the whole tensor and is refused with an error naming the parameter.
"""

from __future__ import annotations

from typing import Any

import torch

from reglab._internals.compat import dtensor_module, placement_types
from reglab._validation import InvalidParameterError

__all__ = ["is_sharded", "local", "project_shard"]


def _dtensor_type() -> type | None:
    """``DTensor``, if anything imported it (importing it here would cost every user of
    ``attach`` ~0.4 s: it pulls in sympy). A tensor can only be a DTensor once its module
    is loaded."""
    module = dtensor_module()
    return None if module is None else module.DTensor


def is_sharded(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``DTensor``."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(t, dtensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor to compute on: a DTensor's local shard (differentiable), else ``t``."""
    return t.to_local() if is_sharded(t) else t  # type: ignore[attr-defined]


def project_shard(binding: Any, project: Any) -> None:
    """Apply ``project(tensor) -> projected`` to a sharded parameter's local shard, when that
    is exact (see the module docstring); raise otherwise."""
    from reglab.constraints import NonNeg

    Shard = placement_types().Shard

    param, constraint, layout = binding.param, binding.constraint, binding.layout
    rows_local = (
        getattr(constraint, "per_unit", False)
        and layout.out_dim == 0
        and layout.groups == 1
        and all(p == Shard(0) or not p.is_shard() for p in param.placements)
    )
    if not (rows_local or type(constraint) is NonNeg):
        raise InvalidParameterError(
            f"{binding.param_name} is sharded (a DTensor, e.g. under FSDP2's fully_shard) with "
            f"placements {tuple(param.placements)}, and {constraint!r} needs values of other "
            "shards. Sharded parameters take NonNeg, and per-unit constraints with the default "
            "axis when the output units (dim 0) are sharded along dim 0."
        )
    shard = param.to_local()
    shard.copy_(project(shard))
