"""Dropout for sequences: locked (variational) dropout and embedding dropout (AWD-LSTM)."""

from __future__ import annotations

import torch
from torch import nn

from reglab._validation import check_probability
from reglab.stochastic.functional import embedding_dropout, locked_dropout

__all__ = ["EmbeddingDropout", "LockedDropout"]


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared over time steps (variational dropout).

    In training mode each (batch element, feature) is zeroed with probability ``p`` for *every*
    time step and kept ones are scaled by ``1/(1-p)``; identity in eval mode.

    Args:
        p: drop probability in [0, 1).
        batch_first: inputs are ``(B, T, *)`` instead of ``(T, B, *)`` (``nn.LSTM``'s default).
        generator: optional ``torch.Generator`` on the input's device.

    >>> drop = LockedDropout(0.5)
    >>> y = drop(torch.ones(4, 2, 3))  # (T, B, H)
    >>> bool((y == y[0]).all())  # the same mask at every step
    True
    """

    def __init__(
        self, p: float = 0.5, batch_first: bool = False, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.p = check_probability(p, "p", "LockedDropout")
        self.batch_first = bool(batch_first)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return locked_dropout(x, self.p, self.training, self.batch_first, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"


class EmbeddingDropout(nn.Module):
    """An ``nn.Embedding`` lookup that drops whole word vectors in training mode.

    Wraps ``embedding`` (its parameters and ``state_dict`` keys stay under ``embedding.``);
    see ``reglab.stochastic.functional.embedding_dropout``.
    """

    def __init__(
        self, embedding: nn.Embedding, p: float = 0.1, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.p = check_probability(p, "p", "EmbeddingDropout")
        self.generator = generator

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        return embedding_dropout(self.embedding, words, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
