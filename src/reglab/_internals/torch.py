"""Torch internals reglab uses where torch offers no public way.

* :func:`current_autograd_node`: the autograd node being executed (``None`` outside backward):
  a forward run inside backward is checkpoint recomputation (activity penalties).
* :func:`saved_tensors_hooks_active`: whether saved-tensor hooks (non-reentrant activation
  checkpointing, ``save_on_cpu``) will pack what the autograd graph saves now: a fused activity
  penalty must not keep the output itself then (activity penalties).
* :func:`unwrapped_step`: an optimizer class's ``step`` without torch's wrappers (hooks, grad
  mode, a graph break), what the compiled fold calls.

>>> import torch
>>> current_autograd_node() is None
True
>>> unwrapped_step(torch.optim.SGD).__qualname__
'SGD.step'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["current_autograd_node", "saved_tensors_hooks_active", "unwrapped_step"]


def current_autograd_node() -> Any:
    """``torch._C._current_autograd_node()``: the node whose backward is running, or ``None``."""
    return torch._C._current_autograd_node()


def saved_tensors_hooks_active() -> bool:
    """``torch._C._autograd._top_saved_tensors_default_hooks``: whether a
    ``torch.autograd.graph.saved_tensors_hooks`` context (checkpointing, offloading) is active."""
    return torch._C._autograd._top_saved_tensors_default_hooks(False) is not None


def unwrapped_step(optimizer_type: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    """``inspect.unwrap(optimizer_type.step)``: the class's own update, under torch's
    ``_use_grad_for_differentiable`` and profiling wrappers."""
    return inspect.unwrap(optimizer_type.step)
