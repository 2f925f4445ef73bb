"""Seeing what was learned: filter grids and reconstructions (matplotlib, imported lazily)."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from reglab._optional import require

__all__ = ["plot_filters", "plot_reconstructions"]


def _figure(**kwargs: Any) -> Any:
    figure = require("matplotlib.figure", "reglab.autoencoders plots")
    return figure.Figure(**kwargs)  # no pyplot: no global state, no display needed


def plot_filters(
    weights: torch.Tensor,
    shape: tuple[int, int],
    path: str | os.PathLike[str] | None = None,
    ncols: int | None = None,
    title: str | None = None,
) -> Any:
    """A grid of filters (encoder rows) or atoms (decoder columns, pass ``W_dec.T``).

    Args:
        weights: ``(n_filters, h * w)``.
        shape: ``(h, w)`` of one filter.
        path: if given, the figure is saved there as PNG.
        ncols: grid width (default ``ceil(sqrt(n))``).

    Each filter is scaled to its own symmetric range, grey = 0, so its *shape* is visible.
    Returns the matplotlib ``Figure``.
    """
    w = weights.detach().float().cpu()
    if w.ndim != 2 or w.shape[1] != shape[0] * shape[1]:
        raise ValueError(
            f"plot_filters needs (n, {shape[0] * shape[1]}) weights for shape "
            f"{shape}. Got {tuple(w.shape)}."
        )
    n = w.shape[0]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(ncols * 0.6, nrows * 0.6 + (0.4 if title else 0)))
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        limit = w[i].abs().max().clamp_min(1e-12).item()
        ax.imshow(w[i].reshape(shape).numpy(), cmap="gray", vmin=-limit, vmax=limit)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def plot_reconstructions(
    ae: Any,
    X: torch.Tensor,
    shape: tuple[int, int],
    n: int = 10,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Originals (top row) above their reconstructions (bottom row); returns the ``Figure``."""
    x = X[:n]
    reconstruction = ae.reconstruct(x).detach().cpu()
    fig = _figure(figsize=(n * 0.8, 1.8))
    for row, images in enumerate((x.cpu(), reconstruction)):
        for i in range(len(x)):
            ax = fig.add_subplot(2, n, row * n + i + 1)
            ax.imshow(images[i].reshape(shape).numpy(), cmap="gray")
            ax.set_axis_off()
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig
