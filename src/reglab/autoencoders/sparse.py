"""Sparse autoencoders: L1 (optionally decoder-norm weighted), KL toward ρ, and TopK."""

from __future__ import annotations

import torch
from torch import nn

from reglab._validation import check_choice, check_coefficient, check_positive_int, invalid
from reglab.autoencoders.base import AEOutput, Autoencoder, reconstruction_loss
from reglab.penalties import KLSparsity

__all__ = ["SparseAutoencoder", "TopK"]


class TopK(nn.Module):
    """Keep the ``k`` largest entries of the last dimension, zero the rest.

    Makhzani & Frey (2013): exactly ``k`` non-zeros per row. With ``relu=True`` the kept values
    also pass a ReLU (Gao et al. 2024), so *at most* ``k`` are non-zero.

    >>> TopK(2)(torch.tensor([[0.5, -1.0, 3.0, 0.1]]))
    tensor([[0.5000, 0.0000, 3.0000, 0.0000]])
    """

    def __init__(self, k: int, relu: bool = False) -> None:
        super().__init__()
        self.k = check_positive_int(k, "k", "TopK")
        self.relu = bool(relu)

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        values, index = pre.topk(self.k, dim=-1)
        if self.relu:
            values = values.relu()
        return torch.zeros_like(pre).scatter(-1, index, values)

    def extra_repr(self) -> str:
        return f"k={self.k}, relu={self.relu}"


class SparseAutoencoder(Autoencoder):
    """A one-hidden-layer autoencoder whose code is made sparse; overcomplete codes work.

    ``pre = W_enc x + b_enc``; ``code = act(pre)``; ``x̂ = out(W_dec code + b_dec)``. The loss is
    ``reconstruction_loss`` plus, by ``sparsity``:

    * ``"l1"`` (ReLU codes): ``coefficient · mean_i Σ_j |h_ij|`` — or, with
      ``decoder_norm_weighted``, ``coefficient · mean_i Σ_j |h_ij| · ||W_dec[:, j]||₂``
      (SAELens' form, which stops the model from shrinking codes by growing decoder columns).
    * ``"kl"`` (sigmoid codes, sigmoid output): ``coefficient · Σ_j KL(ρ ‖ ρ̂_j)`` with ρ =
      ``target`` (UFLDL's sparse autoencoder; ``KLSparsity``).
    * ``"topk"``: the code keeps the ``k`` largest pre-activations (``TopK``); no penalty.
      An auxiliary loss (Gao et al. 2024) revives dead features: features that fired on none
      of the last ``dead_after`` training samples reconstruct the residual ``x − x̂`` with their
      ``2k`` largest pre-activations, weighted by ``aux_coefficient``.

    Args:
        d_in: input size.
        d_code: code size (``d_code > d_in`` is an overcomplete code).
        sparsity: ``"l1"``, ``"kl"`` or ``"topk"``.
        coefficient: weight of the sparsity penalty (``"l1"``, ``"kl"``).
        target: ρ for ``"kl"``.
        k: active features per input for ``"topk"``.
        decoder_norm_weighted: SAELens' weighting of the L1 term.
        tied: decoder = encoderᵀ.
        aux_coefficient: weight of TopK's auxiliary loss.
        dead_after: training samples without firing after which a feature counts as dead.

    >>> sae = SparseAutoencoder(64, 256, sparsity="topk", k=8)
    >>> out = sae(torch.rand(4, 64))
    >>> (out.code != 0).sum(1).tolist()
    [8, 8, 8, 8]
    """

    def __init__(
        self,
        d_in: int,
        d_code: int,
        sparsity: str = "l1",
        *,
        coefficient: float = 1e-3,
        target: float = 0.05,
        k: int | None = None,
        decoder_norm_weighted: bool = False,
        tied: bool = False,
        aux_coefficient: float = 1 / 32,
        dead_after: int = 10_000,
    ) -> None:
        owner = "SparseAutoencoder"
        d_in = check_positive_int(d_in, "d_in", owner)
        d_code = check_positive_int(d_code, "d_code", owner)
        self_sparsity = check_choice(sparsity, "sparsity", owner, ("l1", "kl", "topk"))
        if self_sparsity == "topk":
            if k is None or not 0 < k <= d_code:
                raise invalid("k", owner, f"an int in [1, d_code={d_code}] with sparsity='topk'", k)
            activation: nn.Module = TopK(k)
        else:
            activation = nn.Sigmoid() if self_sparsity == "kl" else nn.ReLU()
        encoder = nn.Sequential(nn.Linear(d_in, d_code), activation)
        decoder: nn.Module = nn.Linear(d_code, d_in)
        if self_sparsity == "kl":
            decoder = nn.Sequential(decoder, nn.Sigmoid())
        super().__init__(encoder, decoder, tied=tied)
        self.sparsity = self_sparsity
        self.coefficient = check_coefficient(coefficient, "coefficient", owner)
        self.kl = KLSparsity(target, 1.0) if self_sparsity == "kl" else None
        self.k = k
        self.decoder_norm_weighted = bool(decoder_norm_weighted)
        self.aux_coefficient = check_coefficient(aux_coefficient, "aux_coefficient", owner)
        self.dead_after = check_positive_int(dead_after, "dead_after", owner)
        # Training samples since each feature last fired (TopK's dead-feature tracking).
        self.register_buffer("samples_since_fired", torch.zeros(d_code, dtype=torch.long))
        if self_sparsity == "topk" and not tied:
            # Gao et al. (2024): unit-norm decoder atoms and encoder = decoderᵀ at init leave
            # far fewer features dead than independent initialisations.
            with torch.no_grad():
                atoms = self.decoder_weight / self.decoder_weight.norm(dim=0, keepdim=True)
                self.decoder_weight.copy_(atoms)
                self.encoder[0].weight.copy_(atoms.T)

    @property
    def decoder_weight(self) -> torch.Tensor:
        """``W_dec`` of shape ``(d_in, d_code)``: column j is feature j's dictionary atom."""
        linear = self.decoder[0] if isinstance(self.decoder, nn.Sequential) else self.decoder
        return linear.weight

    def forward(self, x: torch.Tensor) -> AEOutput:
        linear, activation = self.encoder[0], self.encoder[1]
        pre = linear(x)
        code = activation(pre)
        if self.training:
            with torch.no_grad():
                fired = (code != 0).any(0)
                self.samples_since_fired.add_(len(x)).masked_fill_(fired, 0)
        return AEOutput(self.decoder(code), code, x, pre)

    def dead_features(self) -> torch.Tensor:
        """Boolean ``(d_code,)``: features that fired on none of the last ``dead_after``
        training samples."""
        return self.samples_since_fired >= self.dead_after

    def sparsity_penalty(self, output: AEOutput) -> torch.Tensor:
        """The sparsity term alone (0 for ``"topk"``)."""
        code = output.code
        if self.sparsity == "kl":
            return self.coefficient * self.kl(code)
        if self.sparsity == "l1":
            magnitude = code.abs()
            if self.decoder_norm_weighted:
                magnitude = magnitude * self.decoder_weight.norm(dim=0)
            return self.coefficient * magnitude.sum(1).mean()
        return code.new_zeros(())

    def _aux_loss(self, output: AEOutput, target: torch.Tensor) -> torch.Tensor:
        dead = self.dead_features()
        n_dead = int(dead.sum())
        if n_dead == 0 or self.aux_coefficient == 0 or not self.training:
            return output.code.new_zeros(())
        k_aux = min(2 * self.k, n_dead)
        pre_dead = output.pre.masked_fill(~dead, float("-inf"))
        values, index = pre_dead.topk(k_aux, dim=-1)
        aux_code = torch.zeros_like(output.pre).scatter(-1, index, values.relu())
        residual = (target - output.reconstruction).detach()
        return self.aux_coefficient * reconstruction_loss(
            aux_code @ self.decoder_weight.T, residual
        )

    def loss(self, output: AEOutput, target: torch.Tensor) -> torch.Tensor:
        loss = reconstruction_loss(output.reconstruction, target) + self.sparsity_penalty(output)
        if self.sparsity == "topk":
            loss = loss + self._aux_loss(output, target)
        return loss

    def extra_repr(self) -> str:
        return f"sparsity={self.sparsity!r}, coefficient={self.coefficient}, k={self.k}"
