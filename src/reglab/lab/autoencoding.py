"""Autoencoder trials: sparse, denoising or linear autoencoders, with PCA comparisons and
linear probes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from reglab.autoencoders import (
    Autoencoder,
    LinearAutoencoder,
    SparseAutoencoder,
    corrupt,
    dictionary_metrics,
    principal_angles,
)
from reglab.lab.datasets import load_data
from reglab.lab.trial import (
    TrialOutcome,
    grid_regularizers,
    history_rows,
    kernel_stats,
    train_model,
)

__all__ = ["run_autoencoder"]


def run_autoencoder(
    config: dict[str, Any], seed: int, epoch_callback: Callable[[int, int], None] | None
) -> TrialOutcome:
    """A (sparse, denoising) autoencoder ``sizes = [d_in, d_code]`` trained on the inputs."""
    (train, test), val = load_data(config["data"])
    x, xt = train[0], test[0]
    m = config["model"]
    if m["linear"]:  # centre with the training mean, as PCA does
        mean = x.mean(0)
        x, xt = x - mean, xt - mean
        val = None if val is None else (val[0] - mean, val[1])
    torch.manual_seed(seed)
    sparse = m["sparsity"] != "none"
    ae: Autoencoder
    if m["linear"]:
        ae = LinearAutoencoder(int(m["sizes"][0]), int(m["sizes"][1]))
    else:
        ae = SparseAutoencoder(
            int(m["sizes"][0]),
            int(m["sizes"][1]),
            m["sparsity"] if sparse else "l1",
            coefficient=float(m["coefficient"]) if sparse else 0.0,
            target=float(m["target"]),
            k=int(m["k"]) or None,
            tied=bool(m["tied"]),
        )
    regularizers = grid_regularizers(config, ae)
    transform = None
    if m["corruption"] != "none":  # denoising: corrupt inputs, targets stay clean

        def transform(batch: torch.Tensor) -> torch.Tensor:
            return corrupt(batch, m["corruption"], float(m["level"]))

    held_out = val[0] if val is not None else xt
    history, seconds = train_model(
        ae,
        (x, x),
        (held_out, held_out),
        config,
        seed,
        epoch_callback,
        regularizers=regularizers,
        loss=ae.loss,
        transform=transform,
    )

    ae.eval()
    stats = dictionary_metrics(ae, xt)
    with torch.no_grad():
        codes = ae.encode(xt)
    metrics = {
        "train_recon": ae.reconstruction_error(x).mean().item(),
        "test_recon": ae.reconstruction_error(xt).mean().item(),
        "fvu": stats.fvu,
        "l0": stats.l0,
        "dead_fraction": stats.dead_fraction,
        "zero_frac": (codes == 0).double().mean().item(),
        "mean_activation": codes.mean().item(),
        **kernel_stats(ae),
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    if m["linear"]:
        metrics.update(_pca_comparison(ae, x, xt))
    if config["data"]["labels"]:
        metrics.update(_linear_probe(ae, train, test))
    return TrialOutcome(metrics, history_rows(history), ae, None)


def _linear_probe(
    ae: Autoencoder,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, float]:
    """Test accuracy of a multinomial logistic regression (scikit-learn) fit on the codes of
    the labelled training rows, and of the same probe on the raw inputs (the baseline a
    representation has to beat)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labelled = train[1] >= 0
    with torch.no_grad():
        views = {
            "probe_test_acc": (ae.encode(train[0][labelled]), ae.encode(test[0])),
            "probe_raw_acc": (train[0][labelled], test[0]),
        }
    out = {}
    for key, (features, test_features) in views.items():
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(features.double().numpy(), train[1][labelled].numpy())
        out[key] = float(probe.score(test_features.double().numpy(), test[1].numpy()))
    return out


def _pca_comparison(ae: Any, x: torch.Tensor, xt: torch.Tensor) -> dict[str, float]:
    """Principal angles between the decoder's span and PCA's top-k subspace (scikit-learn, fit
    on the training rows), and PCA's own test reconstruction error, for the same k."""
    from sklearn.decomposition import PCA

    angles = np.degrees(principal_angles(ae, x))
    pca = PCA(n_components=len(angles)).fit(x.double().numpy())
    test = xt.double().numpy()
    reconstruction = pca.inverse_transform(pca.transform(test))
    return {
        "max_angle": float(angles.max()),
        "mean_angle": float(angles.mean()),
        "pca_recon": float(((reconstruction - test) ** 2).sum(1).mean()),
    }
