"""Dictionaries of learned features for any model: collect activations, train a sparse
autoencoder on them, and measure it (L0, explained variance, dead features)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reglab._validation import InvalidParameterError
from reglab.autoencoders.sparse import SparseAutoencoder

__all__ = ["DictionaryMetrics", "collect_activations", "dictionary_metrics", "train_dictionary"]


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    layer: str,
    data: torch.Tensor | Iterable[Any],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Outputs of ``model``'s submodule ``layer`` over ``data``, streamed in batches.

    A forward hook records the layer's output (the first element of tuple outputs) while the
    model runs in eval mode without gradients; batches are moved to the model's device and the
    result is gathered on the CPU.

    Args:
        model: any module.
        layer: the submodule's name in ``model.named_modules()`` (``"act0"``, ``"encoder.2"``).
        data: an input tensor (split into ``batch_size`` rows) or an iterable of batches
            (tensors, or ``(x, y)`` pairs).

    Returns:
        ``(N, *output_shape)`` activations.
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        raise InvalidParameterError(
            f"collect_activations: {type(model).__name__} has no submodule {layer!r}. "
            f"Available: {', '.join(repr(n) for n in modules if n)}."
        )
    device = (
        torch.device(device)
        if device is not None
        else next((p.device for p in model.parameters()), torch.device("cpu"))
    )
    batches = data.split(batch_size) if isinstance(data, torch.Tensor) else data
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        captured.append(out.detach().cpu())

    handle = modules[layer].register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


@dataclass(frozen=True)
class DictionaryMetrics:
    """``l0``: mean number of active features per input; ``fvu``: fraction of variance
    unexplained, ``Σ||x − x̂||² / Σ||x − mean(x)||²``; ``dead_fraction``: fraction of features
    active on no input of the evaluation window."""

    l0: float
    fvu: float
    dead_fraction: float


@torch.no_grad()
def dictionary_metrics(sae: SparseAutoencoder, acts: torch.Tensor) -> DictionaryMetrics:
    """Evaluate a dictionary on ``acts`` (the window for dead features)."""
    sae.eval()
    codes = sae.encode(acts)
    reconstruction = sae.decoder(codes)
    active = codes != 0
    residual = (acts - reconstruction).square().sum()
    variance = (acts - acts.mean(0)).square().sum()
    return DictionaryMetrics(
        l0=active.sum(1).double().mean().item(),
        fvu=(residual / variance).item(),
        dead_fraction=(~active.any(0)).double().mean().item(),
    )


def train_dictionary(
    acts: torch.Tensor,
    n_features: int,
    sparsity: str = "topk",
    *,
    k: int | None = None,
    coefficient: float = 1e-3,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[SparseAutoencoder, DictionaryMetrics]:
    """Train a sparse autoencoder with ``n_features`` features on activations ``(N, d)``.

    Activations of more dimensions (``(N, T, d)``) are flattened to rows of the last dimension.
    ``sparsity="topk"`` (default; ``k`` defaults to ``max(1, d // 8)``), ``"l1"`` (decoder-norm
    weighted, SAELens' form) or ``"kl"`` (needs activations in [0, 1]). Returns the SAE and its
    ``DictionaryMetrics`` on ``acts``.
    """
    acts = acts.reshape(-1, acts.shape[-1]).float()
    d = acts.shape[1]
    if sparsity == "topk" and k is None:
        k = max(1, d // 8)
    torch.manual_seed(seed)
    sae = SparseAutoencoder(
        d,
        n_features,
        sparsity,
        k=k,
        coefficient=coefficient,
        decoder_norm_weighted=sparsity == "l1",
    )
    sae.fit(acts, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    return sae, dictionary_metrics(sae, acts)
