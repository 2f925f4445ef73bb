"""Autoencoder trials: sparse, denoising or linear autoencoders, with PCA comparisons and
linear probes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from reglab.autoencoders import (
    Autoencoder,
    LinearAutoencoder,
    SparseAutoencoder,
    corrupt,
    dictionary_metrics,
    principal_angles,
)
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import DataConfig, load_data
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import (
    KeyPath,
    Table,
    boolean,
    choice,
    fail,
    integer,
    number,
    sequence_of,
    spec,
)
from reglab.lab.work.init import load_init
from reglab.lab.work.training import (
    TrialContext,
    TrialOutcome,
    history_rows,
    kernel_stats,
    train_model,
)

__all__ = ["KIND", "AutoencoderModel", "run_autoencoder"]


def _two_sizes(path: str, value: Any) -> tuple[int, int]:
    return sequence_of(integer(1), length=2, what="[d_in, d_code] (an autoencoder takes 2 sizes)")(
        path, value
    )


@dataclass(frozen=True)
class AutoencoderModel(Table):
    """``[model] kind = "autoencoder"``: ``sizes = [d_in, d_code]``; a sparse
    (``sparsity``, ``coefficient``, ``target``, ``k``), tied, denoising (``corruption``,
    ``level``) or linear (``linear = true``: centred inputs, compared with PCA) autoencoder."""

    kind: ClassVar[str] = "autoencoder"
    sizes: tuple[int, int] = spec(check=_two_sizes)
    sparsity: str = spec("none", choice("none", "l1", "kl", "topk"))
    coefficient: float = spec(0.0, number(0.0))
    target: float = spec(0.05, number(above=0.0, below=1.0))
    k: int = spec(0, integer(0))
    tied: bool = spec(False, boolean())
    corruption: str = spec("none", choice("none", "mask", "gaussian", "salt_pepper"))
    level: float = spec(0.0, number(0.0))
    linear: bool = spec(False, boolean())
    stochastic: ClassVar[bool] = True

    def check(self, data: DataConfig, where: KeyPath) -> None:
        if data.features is not None and self.sizes[0] != data.features:
            raise fail(
                where("sizes"),
                f"must start with the {data.features} input features of '{data.title}'",
                list(self.sizes),
            )
        if self.sparsity == "topk" and not 0 < self.k <= self.sizes[1]:
            raise fail(where("k"), f"sparsity = 'topk' needs 1 <= k <= {self.sizes[1]}", self.k)

    def build(self, data: DataConfig) -> Autoencoder:
        del data
        d_in, d_code = self.sizes
        if self.linear:
            return LinearAutoencoder(d_in, d_code)
        sparse = self.sparsity != "none"
        return SparseAutoencoder(
            d_in,
            d_code,
            self.sparsity if sparse else "l1",
            coefficient=self.coefficient if sparse else 0.0,
            target=self.target,
            k=self.k or None,
            tied=self.tied,
        )


def run_autoencoder(config: TrialConfig, seed: int, context: TrialContext) -> TrialOutcome:
    """A (sparse, denoising) autoencoder ``sizes = [d_in, d_code]`` trained on the inputs."""
    (train, test), val = load_data(config.data)
    x, xt = train[0], test[0]
    m: AutoencoderModel = config.model  # type: ignore[assignment]
    if m.linear:  # centre with the training mean, as PCA does
        mean = x.mean(0)
        x, xt = x - mean, xt - mean
        val = None if val is None else (val[0] - mean, val[1])
    torch.manual_seed(seed)
    ae = m.build(config.data)
    load_init(config, seed, ae, context.device)
    transform = None
    if m.corruption != "none":  # denoising: corrupt inputs, targets stay clean

        def transform(batch: torch.Tensor) -> torch.Tensor:
            return corrupt(batch, m.corruption, m.level)

    held_out = val[0] if val is not None else xt
    history, seconds = train_model(
        ae, (x, x), (held_out, held_out), config, seed, context, loss=ae.loss, transform=transform
    )

    ae.eval()
    stats = dictionary_metrics(ae, xt)
    with torch.no_grad():
        codes = ae.encode(xt)
    metrics = {
        "train_recon": ae.reconstruction_error(x).mean().item(),
        "test_recon": ae.reconstruction_error(xt).mean().item(),
        **({} if val is None else {"val_recon": ae.reconstruction_error(val[0]).mean().item()}),
        "fvu": stats.fvu,
        "l0": stats.l0,
        "dead_fraction": stats.dead_fraction,
        "zero_frac": (codes == 0).double().mean().item(),
        "mean_activation": codes.mean().item(),
        **kernel_stats(ae),
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    if m.linear:
        metrics.update(_pca_comparison(ae, x, xt))
    if config.data.labels:
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


def _network(config: TrialConfig) -> nn.Module:
    return config.model.build(config.data)  # type: ignore[union-attr]


KIND = register(
    Kind(
        "autoencoder",
        AutoencoderModel,
        "autoencoder",
        network=_network,
        run=run_autoencoder,
        order=4,
    )
)
