"""Regenerate the README's figures: ``python docs/make_figures.py`` (MNIST must be fetched:
``reglab data get mnist``). Seeded; takes about a minute on 2 CPU cores."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from reglab.autoencoders import SparseAutoencoder, dictionary_metrics, plot_filters
from reglab.data import image_patches, mnist

OUT = Path(__file__).parent / "images"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    torch.manual_seed(0)
    (x, _), _ = mnist()
    x = x[:20000]
    start = time.perf_counter()
    sae = SparseAutoencoder(784, 256, "topk", k=24).fit(x, epochs=15, lr=1e-3, batch_size=128)
    m = dictionary_metrics(sae, x)
    print(
        f"MNIST TopK 784->256, k=24: L0 {m.l0:.1f}, FVU {m.fvu:.3f}, dead {m.dead_fraction:.3f}"
        f" ({time.perf_counter() - start:.0f} s)"
    )
    plot_filters(sae.decoder_weight.T[:64], (28, 28), OUT / "mnist_topk_atoms.png", ncols=16)

    torch.manual_seed(0)
    patches = image_patches(size=8, n=20000, seed=0, normalize="zca")
    start = time.perf_counter()
    sae = SparseAutoencoder(64, 128, "topk", k=4).fit(patches, epochs=40, lr=1e-3, batch_size=128)
    m = dictionary_metrics(sae, patches)
    print(
        f"ZCA patches TopK 64->128, k=4: L0 {m.l0:.1f}, FVU {m.fvu:.3f}, "
        f"dead {m.dead_fraction:.3f} ({time.perf_counter() - start:.0f} s)"
    )
    plot_filters(sae.decoder_weight.T[:64], (8, 8), OUT / "patches_topk_atoms.png", ncols=16)


if __name__ == "__main__":
    main()
