"""Autoencoders on real data (digits, natural image patches), seeded and small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from torch import nn

from reglab import InvalidParameterError
from reglab.autoencoders import (
    Autoencoder,
    DenoisingAutoencoder,
    LinearAutoencoder,
    ReconstructionOutlierDetector,
    SparseAutoencoder,
    TopK,
    collect_activations,
    plot_filters,
    plot_reconstructions,
    pretrain_layerwise,
    principal_angles,
    reconstruction_loss,
    train_dictionary,
)
from reglab.data import digits, image_patches
from reglab.lab import mlp


@pytest.fixture(scope="module")
def data():
    return digits()


def test_kl_sparse_autoencoder_reaches_the_target_mean_activation() -> None:
    pytest.importorskip("skimage")
    patches = image_patches(n=10000, seed=0)  # UFLDL: 64-25-64 sigmoid, rho 0.01, beta 3
    torch.manual_seed(0)
    sae = SparseAutoencoder(64, 25, "kl", coefficient=3.0, target=0.01)
    sae.fit(patches, epochs=60, lr=1e-2, batch_size=256, l2=5e-5)
    mean_activation = sae.encode(patches).mean().item()
    assert mean_activation == pytest.approx(0.01, abs=0.005)
    unregularized = SparseAutoencoder(64, 25, "kl", coefficient=0.0)
    torch.manual_seed(0)
    unregularized.fit(patches, epochs=10, lr=1e-2, batch_size=256)
    assert unregularized.encode(patches).mean().item() > 5 * mean_activation


def test_l1_makes_overcomplete_codes_sparser(data) -> None:
    (x, _), _ = data
    zeros = {}
    for coefficient in (0.0, 0.05):
        torch.manual_seed(0)
        sae = SparseAutoencoder(64, 256, "l1", coefficient=coefficient)  # overcomplete
        sae.fit(x, epochs=15, lr=3e-3)
        zeros[coefficient] = (sae.encode(x) == 0).double().mean().item()
    assert zeros[0.05] > zeros[0.0] + 0.2, zeros


def test_decoder_norm_weighting_is_the_saelens_form() -> None:
    sae = SparseAutoencoder(4, 6, "l1", coefficient=0.5, decoder_norm_weighted=True)
    out = sae(torch.rand(3, 4))
    expected = 0.5 * (out.code.abs() * sae.decoder_weight.norm(dim=0)).sum(1).mean()
    torch.testing.assert_close(sae.sparsity_penalty(out), expected)


def test_topk_keeps_exactly_k_nonzeros_and_revives_dead_features(data) -> None:
    (x, _), _ = data
    assert (TopK(3)(torch.randn(50, 20)) != 0).sum(1).eq(3).all()
    assert (TopK(3, relu=True)(torch.randn(50, 20)) != 0).sum(1).le(3).all()
    torch.manual_seed(0)
    sae = SparseAutoencoder(64, 128, "topk", k=5, dead_after=2000)
    sae.fit(x, epochs=5, lr=3e-3)
    assert (sae.encode(x) != 0).sum(1).eq(5).all()
    with torch.no_grad():
        sae.samples_since_fired.fill_(0)
        sae.samples_since_fired[:10] = 5000  # pretend 10 features died
    sae.train()
    out = sae(x[:64])
    assert sae._aux_loss(out, x[:64]).item() > 0
    sae.eval()


def test_denoising_loss_uses_the_clean_target() -> None:
    # An identity autoencoder reconstructs exactly what it sees: against the clean input its
    # loss is the corruption's size; against its own (noisy) input it would be 0.
    dae = DenoisingAutoencoder(
        nn.Identity(),
        nn.Identity(),
        corruption="mask",
        level=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    x = torch.rand(32, 10) + 0.5
    out = dae(x)
    assert not torch.equal(out.inputs, x)  # corrupted in training mode
    loss = dae.loss(out, x)
    torch.testing.assert_close(loss, reconstruction_loss(out.inputs, x))
    assert loss.item() > 1.0
    assert dae.eval()(x).inputs is x  # no corruption at evaluation


@pytest.mark.parametrize("corruption", ["mask", "gaussian", "salt_pepper"])
def test_denoising_trains_against_clean_inputs(data, corruption: str) -> None:
    (x, _), _ = data
    torch.manual_seed(0)
    dae = DenoisingAutoencoder(
        nn.Sequential(nn.Linear(64, 32), nn.ReLU()),
        nn.Linear(32, 64),
        corruption=corruption,
        level=0.2,
    )
    dae.fit(x, epochs=8, lr=3e-3)
    assert dae.history_["loss"][-1] < 0.6 * dae.history_["loss"][0]


def test_linear_autoencoder_spans_the_principal_subspace(data) -> None:
    (x, _), _ = data
    xc = x - x.mean(0)
    torch.manual_seed(0)
    # Gradient descent alone, from a random start (Baldi & Hornik's result).
    ae = LinearAutoencoder(64, 4).fit(xc, init="random", epochs=150, lr=3e-3, batch_size=128)
    angles = np.degrees(principal_angles(ae, xc))
    assert angles.max() < 2.0, angles  # measured: 0.69 degrees
    pca = PCA(4).fit(xc.numpy())
    pca_error = ((pca.inverse_transform(pca.transform(xc.numpy())) - xc.numpy()) ** 2).sum(1).mean()
    assert ae.reconstruction_error(xc).mean().item() == pytest.approx(pca_error, rel=0.01)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_linear_autoencoder_fit_converges_by_default(data, k: int) -> None:
    """``fit`` with its defaults starts from the closed form: the PCA subspace, PCA's error."""
    (x, _), _ = data
    xc = x - x.mean(0)
    torch.manual_seed(0)
    ae = LinearAutoencoder(64, k).fit(xc)
    assert principal_angles(ae, xc).max() < 0.05
    pca = PCA(k).fit(xc.numpy())
    pca_error = ((pca.inverse_transform(pca.transform(xc.numpy())) - xc.numpy()) ** 2).sum(1).mean()
    assert ae.reconstruction_error(xc).mean().item() == pytest.approx(pca_error, rel=1e-4)
    # A penalty moves the optimum: then it trains (20 epochs by default).
    penalised = LinearAutoencoder(64, k).fit(xc, l2=1e-4)
    assert len(penalised.history_) == 20
    # Gradient descent alone from a random start has not converged after 20 epochs.
    random = LinearAutoencoder(64, k).fit(xc, init="random")
    assert principal_angles(random, xc).max() > 0.3


def test_tied_autoencoder_shares_one_matrix(data) -> None:
    (x, _), _ = data
    ae = Autoencoder(nn.Sequential(nn.Linear(64, 16), nn.ReLU()), nn.Linear(16, 64), tied=True)
    assert torch.equal(ae.decoder.weight, ae.encoder[0].weight.T)
    ae.fit(x[:256], epochs=2, l2=1e-4)
    assert torch.equal(ae.decoder.weight, ae.encoder[0].weight.T)
    assert sum(p.numel() for p in ae.parameters()) == 64 * 16 + 16 + 64
    with pytest.raises(
        InvalidParameterError,
        match=r"needs as many Linear layers in the decoder as in the encoder\. Got 1 and 2",
    ):
        Autoencoder(nn.Linear(4, 2), nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4)), tied=True)


def test_layerwise_pretraining_initialises_the_mlp(data) -> None:
    (x, _), _ = data
    torch.manual_seed(0)
    model = mlp([64, 32, 16, 10])
    before = model.fc0.weight.detach().clone()
    out, autoencoders = pretrain_layerwise(
        model, x, "denoising", epochs=4, return_autoencoders=True
    )
    assert out is model
    assert len(autoencoders) == 2
    assert autoencoders[0].encoder[0] is model.fc0  # the first layer *is* the trained encoder
    assert autoencoders[1].encoder[0] is model.fc1
    assert not torch.equal(model.fc0.weight, before)
    for ae in autoencoders:
        assert ae.history_["loss"][-1] < ae.history_["loss"][0]
    codes = model.act0(model.fc0(x)).detach()
    torch.testing.assert_close(autoencoders[0].encode(x), codes)


def test_outlier_detector_flags_a_held_out_digit(data) -> None:
    (x, y), (xt, yt) = data
    held_out = 0
    detector = ReconstructionOutlierDetector(
        lambda: Autoencoder(nn.Sequential(nn.Linear(64, 16), nn.ReLU()), nn.Linear(16, 64)),
        contamination=0.05,
        epochs=40,
        lr=3e-3,
    ).fit(x[y != held_out])
    scores = -detector.score_samples(xt)
    auroc = roc_auc_score((yt == held_out).numpy(), scores.numpy())
    assert auroc > 0.65, auroc  # measured 0.75; chance is 0.5
    labels = detector.predict(xt[yt != held_out])
    assert (labels == 1).double().mean() > 0.85  # inliers mostly accepted
    assert detector.threshold_ == -detector.offset_


def test_dictionary_of_a_classifier_hidden_layer(data) -> None:
    (x, _), _ = data
    torch.manual_seed(0)
    classifier = mlp([64, 128, 10])
    acts = collect_activations(classifier, "act0", x, batch_size=100)
    assert acts.shape == (len(x), 128)
    torch.testing.assert_close(acts, classifier.act0(classifier.fc0(x)).detach())
    _sae, metrics = train_dictionary(acts, 256, "topk", k=16, epochs=20)
    assert metrics.l0 == 16.0
    assert 0.0 < metrics.fvu < 0.5
    assert metrics.dead_fraction < 0.5
    with pytest.raises(
        InvalidParameterError, match=r"has no submodule 'act9'\. Available: 'fc0', 'act0', 'fc1'"
    ):
        collect_activations(classifier, "act9", x)


def test_plots_write_pngs(tmp_path: Path, data) -> None:
    (x, _), _ = data
    ae = Autoencoder(nn.Sequential(nn.Linear(64, 16), nn.ReLU()), nn.Linear(16, 64))
    fig = plot_filters(ae.encoder[0].weight, (8, 8), tmp_path / "filters.png", title="filters")
    assert len(fig.axes) == 16
    plot_reconstructions(ae, x, (8, 8), n=5, path=tmp_path / "recon.png")
    for name in ("filters.png", "recon.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(
        ValueError, match=r"plot_filters needs \(n, 64\) weights for shape \(8, 8\)"
    ):
        plot_filters(torch.zeros(3, 10), (8, 8))


def test_bad_arguments() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"'k' parameter of SparseAutoencoder must be an int in \[1, d_code=8\] with sparsity='topk'\. Got None",
    ):
        SparseAutoencoder(4, 8, "topk")
    with pytest.raises(
        InvalidParameterError,
        match=r"'sparsity' parameter of SparseAutoencoder must be one of 'l1', 'kl', 'topk'",
    ):
        SparseAutoencoder(4, 8, "l0")
    with pytest.raises(
        InvalidParameterError,
        match=r"'level' parameter of DenoisingAutoencoder must be a probability in \[0, 1\)\. Got 1\.5",
    ):
        DenoisingAutoencoder(nn.Identity(), nn.Identity(), "mask", 1.5)
