"""What ``fit`` returns: per-epoch logs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch logs of one ``fit`` call.

    ``epochs[i]`` is the dict logged at the end of epoch ``i`` (``loss``, ``val_loss``, metrics,
    ``penalty``, ``penalty/<term>``, ``step_time``, ...). ``history["val_loss"]`` is the column
    as a list (NaN where an epoch lacks the key). ``stop_reason`` says why training ended early
    (``None`` when it ran all epochs). ``diverged`` names the first non-finite value when
    training stopped on one (``"penalty/fc1.kernel is inf at step 1234 (epoch 3)"``); the
    epoch it happened in is not logged.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str | None = None
    diverged: str | None = None

    def __getitem__(self, key: str) -> list[float]:
        if key not in self:
            raise KeyError(f"{key!r} was not logged. Logged: {', '.join(self.keys())}.")
        return [e.get(key, math.nan) for e in self.epochs]

    def __contains__(self, key: object) -> bool:
        return any(key in e for e in self.epochs)

    def keys(self) -> list[str]:
        """Every logged key, in first-seen order."""
        return list(dict.fromkeys(k for e in self.epochs for k in e))

    def __len__(self) -> int:
        return len(self.epochs)
