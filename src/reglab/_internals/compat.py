"""The one door to torch internals that changed between the torch versions reglab supports.

Each function here hides one difference between torch 2.3 (the former floor; the declared
one is in ``pyproject.toml``) and the newest torch, so that an upgrade (or a downgrade) fails
in this module alone; each has a test in ``tests/test_compat.py``.

* ``torch._foreach_norm(..., dtype=)``: the ``dtype`` argument came after torch 2.3.
* ``DTensor`` and its placements: ``torch.distributed.tensor`` since torch 2.5 (before:
  ``torch.distributed._tensor``).
* FSDP2's ``fully_shard``: ``torch.distributed.fsdp`` since torch 2.6 (before:
  ``torch.distributed._composable.fsdp``).
* ``fold_into(compile=True)``: the optimizer's unwrapped update compiled together with the
  penalty's gradient is verified on torch 2.13; on torch 2.3.1 dynamo's trace of it trains
  differently from the third step on (even with ``backend="eager"``), so older torches take
  the eager fold (:data:`COMPILED_FOLD`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "COMPILED_FOLD",
    "dtensor_module",
    "foreach_norm",
    "fully_shard",
    "fully_shard_function",
    "placement_types",
]


#: Whether ``fold_into(compile=True)`` compiles the update on this torch (the lowest torch it
#: was verified on is 2.13.0; 2.3.1 trains wrongly).
COMPILED_FOLD = torch.torch_version.TorchVersion(torch.__version__) >= "2.13"


def _foreach_norm_takes_dtype() -> bool:
    try:
        torch._foreach_norm([torch.zeros(1)], 2, dtype=torch.float32)
    except TypeError:
        return False
    return True


_FOREACH_NORM_DTYPE = _foreach_norm_takes_dtype()


def foreach_norm(
    tensors: Sequence[torch.Tensor], ord: float, dtype: torch.dtype
) -> Sequence[torch.Tensor]:
    """``torch._foreach_norm(tensors, ord, dtype=dtype)``: each tensor's norm, accumulated in
    ``dtype``. Without the ``dtype`` argument (torch 2.3) tensors of another dtype are
    converted first (a copy: only half-precision tensors, whose norms accumulate in float32)."""
    if _FOREACH_NORM_DTYPE:
        return torch._foreach_norm(tensors, ord, dtype=dtype)
    return torch._foreach_norm([t if t.dtype == dtype else t.to(dtype) for t in tensors], ord)


_DTENSOR_MODULES = ("torch.distributed.tensor", "torch.distributed._tensor")


def dtensor_module() -> Any:
    """The module that defines ``DTensor``, if something imported it already (importing it
    costs ~0.4 s: ``reglab`` never does so just to test a tensor), else None."""
    for name in _DTENSOR_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "DTensor"):
            return module
    return None


def placement_types() -> Any:
    """The module holding ``Shard`` / ``Replicate`` (imports it)."""
    for name in _DTENSOR_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "Shard"):
            return module
    raise ImportError("torch.distributed has no DTensor in this torch build")


def fully_shard_function() -> Any:
    """FSDP2's ``fully_shard``, wherever this torch keeps it (imports it)."""
    for name in ("torch.distributed.fsdp", "torch.distributed._composable.fsdp"):
        try:
            function = getattr(importlib.import_module(name), "fully_shard", None)
        except ImportError:
            continue
        if function is not None:
            return function
    raise ImportError("FSDP2's fully_shard is not in this torch build")


def fully_shard(*args: Any, **kwargs: Any) -> Any:
    """``fully_shard(module, ...)`` (see :func:`fully_shard_function`)."""
    return fully_shard_function()(*args, **kwargs)
