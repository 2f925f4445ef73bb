"""Mixed precision for :func:`reglab.fit`: ``precision = "32" | "bf16" | "fp16"``.

``"32"`` trains in float32 (no autocast). ``"bf16"`` and ``"fp16"`` run the forward pass, the
loss and the penalties under ``torch.autocast(device.type, dtype)`` (matrix products in the
reduced dtype, reductions and losses in float32, as autocast decides); the parameters, their
gradients and the optimizer's state stay float32. ``"fp16"`` also scales the loss with
``torch.amp.GradScaler`` (float16 gradients underflow otherwise): a step whose gradients are
not finite is skipped and the scale lowered. ``bf16`` has float32's range and needs no scaler.

``fp16`` needs an accelerator: on the CPU it is refused (CPU float16 matrix products are slow
and gain nothing; ``bf16`` is the CPU's reduced precision). Optimizers that evaluate a closure
(``reglab.optim.SAM``) cannot be used with ``fp16`` (the scaler does not support closures).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from reglab._validation import InvalidParameterError

__all__ = ["PRECISIONS", "Precision"]

#: ``precision`` -> the autocast dtype (None: float32, no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


class Precision:
    """The autocast context and (for ``fp16``) the gradient scaler of one training run.

    >>> p = Precision("bf16", torch.device("cpu"))
    >>> with p.autocast():
    ...     (torch.ones(2, 3) @ torch.ones(3, 4)).dtype
    torch.bfloat16
    """

    def __init__(self, precision: str, device: torch.device, owner: str = "fit") -> None:
        if precision not in PRECISIONS:
            raise InvalidParameterError(
                f"The 'precision' parameter of {owner} must be one of "
                f"{', '.join(repr(p) for p in PRECISIONS)}. Got {precision!r} instead."
            )
        if precision == "fp16" and device.type == "cpu":
            raise InvalidParameterError(
                f"The 'precision' parameter of {owner} is 'fp16', which needs an accelerator "
                "(a CUDA or MPS device); on the CPU use 'bf16' or '32'."
            )
        self.precision, self.device = precision, device
        self.dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> Any:
        """``torch.autocast`` in the run's dtype, or nothing for ``"32"``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def step(self, total: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward from ``total`` and one optimizer step (scaled for ``fp16``)."""
        if self.scaler is None:
            total.backward()
            optimizer.step()
            return
        self.scaler.scale(total).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
