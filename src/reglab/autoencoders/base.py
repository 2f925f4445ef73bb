"""The basic autoencoder: encoder, decoder, optional tied weights, ``fit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

import reglab
from reglab._validation import InvalidParameterError, check_coefficient
from reglab.penalties import L2
from reglab.sharing import tie_weights
from reglab.training import Callback, History, fit

__all__ = ["AEOutput", "Autoencoder", "reconstruction_loss"]


class AEOutput(NamedTuple):
    """What an autoencoder's forward returns.

    ``inputs`` is what the encoder saw (the corrupted input for a denoising autoencoder);
    losses compare ``reconstruction`` with the *target* passed to them (the clean input).
    ``pre`` holds the code's pre-activations where a model needs them (TopK), else None.
    """

    reconstruction: torch.Tensor
    code: torch.Tensor
    inputs: torch.Tensor
    pre: torch.Tensor | None = None


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``½ · mean_i ||x_i − x̂_i||²``: the squared error summed over features, averaged over
    the batch (UFLDL's convention; ``d/2`` times ``F.mse_loss`` for ``d`` features)."""
    return 0.5 * (reconstruction - target).square().flatten(1).sum(1).mean()


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


class Autoencoder(nn.Module):
    """``x -> encoder -> code -> decoder -> reconstruction``, trained to reproduce its input.

    Args:
        encoder: any module ``x -> code``.
        decoder: any module ``code -> reconstruction`` (shapes matching the encoder's).
        tied: tie the decoder's ``Linear`` weights to the transposes of the encoder's, in mirror
            order (decoder = encoderᵀ; ``reglab.sharing.tie_weights``), halving the
            parameters.

    ``forward(x)`` returns ``AEOutput``; ``loss`` is ``reconstruction_loss``
    against the target; ``fit`` trains on ``X`` with ``reglab.training.fit``.

    >>> ae = Autoencoder(nn.Sequential(nn.Linear(64, 16), nn.ReLU()), nn.Linear(16, 64), tied=True)
    >>> ae.encode(torch.rand(5, 64)).shape
    torch.Size([5, 16])
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, tied: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.tied = bool(tied)
        if tied:
            enc, dec = _linears(encoder), _linears(decoder)[::-1]
            if not enc or len(enc) != len(dec):
                raise InvalidParameterError(
                    f"Autoencoder(tied=True) needs as many Linear layers in the decoder as in "
                    f"the encoder. Got {len(enc)} and {len(dec)}."
                )
            for e, d in zip(enc, dec, strict=True):
                tie_weights(e, "weight", d, "weight", transpose=True)
        self.history_: History | None = None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of ``x`` (no corruption, whatever the mode)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> AEOutput:
        code = self.encoder(x)
        return AEOutput(self.decoder(code), code, x)

    def loss(self, output: AEOutput, target: torch.Tensor) -> torch.Tensor:
        """Training loss of ``output`` against the clean ``target``."""
        return reconstruction_loss(output.reconstruction, target)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.decoder(self.encoder(x))
        finally:
            self.train(was_training)

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample ``||x − x̂||²``, shape ``(N,)``."""
        return (self.reconstruct(x) - x).square().flatten(1).sum(1)

    def fit(
        self,
        X: torch.Tensor,
        *,
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
        l2: float = 0.0,
        val: torch.Tensor | None = None,
        regularization: Any = None,
        callbacks: Sequence[Callback] = (),
        seed: int | None = 0,
        progress: bool = False,
        device: str | torch.device = "cpu",
    ) -> Autoencoder:
        """Train with Adam to reconstruct ``X`` (targets are ``X`` itself); returns ``self``.

        ``l2`` is an :class:`~reglab.penalties.L2` coefficient on every ``Linear`` weight
        (``l2 · ΣW²``, added to the loss; UFLDL's ``λ/2 · ΣW²`` is ``l2 = λ/2``). In reglab
        ``weight_decay`` always means an optimizer's own decay (``grad += λ · w``). Extra
        ``regularization`` objects (e.g. from ``reglab.attach``) are added. The
        ``History`` is kept in ``history_``.
        """
        check_coefficient(l2, "l2", "Autoencoder.fit")
        regularizers = (
            []
            if regularization is None
            else (
                list(regularization)
                if isinstance(regularization, (list, tuple))
                else [regularization]
            )
        )
        decay = None
        if l2 > 0:
            decay = reglab.attach(self, {nn.Linear: {"kernel": L2(l2)}})
            regularizers.append(decay)
        try:
            self.history_ = fit(
                self,
                (X, X),
                None if val is None else (val, val),
                loss=self.loss,
                optimizer=torch.optim.Adam(self.parameters(), lr=lr),
                epochs=epochs,
                batch_size=batch_size,
                regularization=regularizers or None,
                callbacks=callbacks,
                seed=seed,
                progress=progress,
                device=device,
            )
        finally:
            if decay is not None:
                decay.remove()
        self.eval()
        return self
