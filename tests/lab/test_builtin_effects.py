"""Effect tests for built-in studies: small, seeded, real data (digits). Each asserts the
direction the literature reports and a conservative magnitude; a broken technique fails them.
Full-size results are in docs/results.md."""

from __future__ import annotations

import functools

import pytest

from reglab.lab import expand, find_study, run_trial


@functools.cache
def _points(study: str) -> dict:
    parsed, _, _ = find_study(study)
    return {p.key: p.config for p in expand(parsed)}


@functools.cache
def _metrics(study: str, key: str, epochs: int, seed: int = 0, **data: int) -> dict[str, float]:
    """One trial of a built-in study's grid point with fewer epochs (and ``data`` overrides,
    e.g. a smaller subset)."""
    config = _points(study)[key].override({"train": {"epochs": epochs}, "data": data})
    return run_trial(config, seed).metrics


def test_weight_penalties_l1_piles_weights_at_zero_l2_shrinks_strong_underfits() -> None:
    none = _metrics("weight-penalties", "none", 10)
    l1 = _metrics("weight-penalties", "L1_l1=0.001", 10)
    l2 = _metrics("weight-penalties", "L2_l2=0.001", 10)
    strong = _metrics("weight-penalties", "L2_l2=0.1", 10)
    assert l1["weight_small_frac"] > 3 * none["weight_small_frac"], (l1, none)
    assert l1["weight_small_frac"] > 3 * l2["weight_small_frac"]
    assert l2["weight_norm"] < 0.8 * none["weight_norm"]
    assert strong["train_acc"] < none["train_acc"] - 0.05  # too strong: underfits


def test_activity_sparsity_needs_relu_and_rises_with_lambda() -> None:
    keys = ["relu_l1=0", "relu_l1=0.0001", "relu_l1=0.001", "relu_l1=0.01"]
    zeros = [_metrics("activity-sparsity", k, 10)["zero_frac"] for k in keys]
    assert zeros == sorted(zeros), zeros
    assert zeros[3] > zeros[0] + 0.3
    # At this budget the penalty does not hurt: within 1.5 points of lambda = 0.
    base = _metrics("activity-sparsity", keys[0], 10)["test_acc"]
    assert _metrics("activity-sparsity", keys[2], 10)["test_acc"] > base - 0.015
    for act in ("tanh", "softplus"):
        penalised = _metrics("activity-sparsity", f"{act}_l1=0.01", 10)
        plain = _metrics("activity-sparsity", f"{act}_l1=0", 10)
        assert penalised["zero_frac"] < 0.01  # smooth units: no exact zeros
        assert abs(penalised["mean_activation"]) < abs(plain["mean_activation"])


def test_bagging_error_falls_with_members_and_obeys_the_decomposition() -> None:
    one = _metrics("bagging", "bagging_members=1", 6)
    eight = _metrics("bagging", "bagging_members=8", 6)
    for m in (one, eight):
        assert m["predicted_mse"] == pytest.approx(m["ensemble_mse"], rel=1e-9)
    # At this 6-epoch budget the members' errors are 98 % correlated (shared bias dominates),
    # so the squared error falls only a little; the accuracy gain is clear (measured +1.9
    # points). Full-size numbers: docs/results.md.
    assert eight["ensemble_mse"] < one["ensemble_mse"]
    assert eight["ensemble_mse"] < eight["mean_member_mse"]
    assert eight["c"] < eight["v"]  # bootstrap members are less than perfectly correlated
    assert eight["test_acc"] > eight["mean_member_acc"] + 0.01


def test_sparse_autoencoder_codes_are_sparse() -> None:
    pytest.importorskip("skimage")
    none = _metrics("sparse-autoencoder", "none", 3)
    topk = _metrics("sparse-autoencoder", "TopK_k=4", 3)
    l1 = _metrics("sparse-autoencoder", "L1_coefficient=0.1", 3)
    assert topk["l0"] == 4.0
    assert l1["l0"] < 0.6 * none["l0"], (l1["l0"], none["l0"])
    assert none["fvu"] < topk["fvu"]  # sparsity costs reconstruction


def test_augmentation_regularizes_when_data_are_scarce() -> None:
    # The full run (docs/results.md) did NOT reproduce a test-accuracy gain from affine
    # augmentation of 8x8 digits (92.7 % vs 93.4 %); what it does show is regularization:
    # the model fits its 200 training digits less (train 97.7 % vs 100 %) and the gap narrows
    # (5.0 vs 6.6 points). This test asserts that measured effect.
    none = _metrics("noise-and-augmentation", "none", 30)
    augmented = _metrics("noise-and-augmentation", "augment", 30)
    assert augmented["train_acc"] < none["train_acc"]
    assert augmented["gap"] < none["gap"] - 0.005, (augmented["gap"], none["gap"])
    # Weight noise (std 0.03) makes the training set harder to fit: measured training loss
    # 0.077 vs 0.037 at 30 epochs; the full run's +0.5 point test gain is within seed noise.
    weight_noise = _metrics("noise-and-augmentation", "weight-noise_weight_noise=0.03", 30)
    assert weight_noise["train_loss"] > 1.5 * none["train_loss"]


def test_linear_autoencoder_finds_the_principal_subspace() -> None:
    m = _metrics("linear-ae-pca", "linear_sizes=64x4", 60)
    assert m["max_angle"] < 5.0, m["max_angle"]  # degrees; full run: docs/results.md
    assert m["test_recon"] == pytest.approx(m["pca_recon"], rel=0.02)


def test_norm_constraints_land_on_the_ridge_path_and_l2_is_u_shaped() -> None:
    def m(key: str) -> dict[str, float]:
        return _metrics("norm-constraints", key, 3000)

    none = m("none")
    assert none["pinv_gap"] < 1e-3  # gradient descent from zero finds pinv(X) y
    assert none["train_mse"] < 1e-4  # and interpolates the noisy targets
    for key, l2 in (("L2_l2=0.01", 0.01), ("L2_l2=1", 1.0), ("L2_l2=10", 10.0)):
        assert m(key)["equiv_l2"] == pytest.approx(l2, rel=0.01)
        assert m(key)["ridge_gap"] < 1e-3
    # Krogh-Hertz: the test error is U-shaped in the penalty (measured 1.18 / 0.54 / 1.00).
    best = m("L2_l2=1")["test_mse"]
    assert best < 0.7 * none["test_mse"]
    assert best < 0.7 * m("L2_l2=10")["test_mse"]
    # Projection and Lagrangian bound: the same point of the ridge path, with norm k = 0.6.
    projected, lagrangian = m("max-norm"), m("norm-bound")
    for bounded in (projected, lagrangian):
        assert bounded["weight_norm"] == pytest.approx(0.6, rel=0.01)
        assert bounded["ridge_gap"] < 0.01
    assert projected["equiv_l2"] == pytest.approx(lagrangian["equiv_l2"], rel=0.02)


def test_dropout_narrows_the_gap_and_weight_scaling_matches_mc_dropout() -> None:
    def m(key: str) -> dict[str, float]:
        return _metrics("dropout-maxnorm", key, 8, subset=3000)

    plain, dropout, capped = m("plain"), m("dropout"), m("dropout_max-norm")
    # Measured at this size: gap 6.5 -> 4.0 points, test 91.9 -> 93.0 %, mean activation
    # 0.25 -> 0.16; MC dropout within 0.2 points of weight scaling.
    assert dropout["gap"] < plain["gap"] - 0.01
    assert dropout["test_acc"] > plain["test_acc"]
    assert dropout["mean_activation"] < 0.8 * plain["mean_activation"]
    assert capped["test_acc"] > dropout["test_acc"] - 0.005  # max-norm: equal or better
    for run in (dropout, capped):
        assert abs(run["test_acc_mc"] - run["test_acc"]) < 0.01
    assert "test_acc_mc" not in plain  # no dropout, no MC estimate


def test_label_smoothing_lowers_confidence_and_temperature_scaling_calibrates() -> None:
    def m(key: str) -> dict[str, float]:
        return _metrics("label-smoothing", key, 10, subset=3000)

    none = m("none")
    # The over-fitted net is over-confident (fitted T > 1) and temperature scaling cuts ECE.
    assert none["temperature"] > 1.2
    assert none["test_ece_ts"] < 0.6 * none["test_ece"]
    for form in ("uniform", "others"):
        smoothed = m(f"smoothing_eps=0.1_form={form}")
        # Smoothing removes the over-confidence; at this size it over-shoots into
        # under-confidence (measured T = 0.57, ECE 12 % vs 4 %): see docs/results.md.
        assert smoothed["temperature"] < 1.0 < none["temperature"]
        assert smoothed["test_acc"] > none["test_acc"] - 0.01


def test_slower_stopping_criteria_stop_later_and_lose_no_accuracy() -> None:
    m = _metrics("early-stopping", "logged-run", 60, subset=600)
    families = {"patience": [5, 10, 20], "gl": [1, 2, 5], "pq": [0.5, 1, 2], "up": [2, 3, 4]}
    for criterion, values in families.items():
        stops = [m[f"stop/{criterion}{v:g}"] for v in values]
        assert stops == sorted(stops), (criterion, stops)
    # The fastest criterion (GL1, measured epoch 13) stops with a lower test accuracy than the
    # slowest (PQ2, epoch 60): measured 81.8 % vs 84.8 %.
    assert m["stop/gl1"] < m["stop/pq2"]
    assert m["test_acc_last/pq2"] > m["test_acc_last/gl1"] + 0.01
    assert m["test_acc_oracle"] >= max(v for k, v in m.items() if k.startswith("test_acc_"))


def test_denoising_autoencoder_codes_probe_better_than_plain_ones() -> None:
    def m(key: str) -> dict[str, float]:
        # every row of the subset trained on (the study holds 20 % out for validation; the
        # probe's 1-2 point effect at this small size depends on which 3,000 rows it sees)
        return _metrics("denoising-pretraining", key, 5, subset=3000, labels=500, validation=0)

    plain, denoising = m("dae_level=0"), m("dae_level=0.25")
    # Measured at this size: 84.1 % (plain AE codes) vs 85.9 % (masking 0.25); raw pixels 84.1 %.
    assert denoising["probe_test_acc"] > plain["probe_test_acc"] + 0.01
    assert denoising["probe_test_acc"] > denoising["probe_raw_acc"] + 0.01


def test_shared_encoder_learns_both_tasks() -> None:
    # The full run did NOT reproduce an accuracy gain from sharing (docs/results.md); what is
    # asserted is that each second task is really learned through the shared trunk.
    classifier = _metrics("multitask-semisupervised", "classifier", 30)
    semi = _metrics("multitask-semisupervised", "semi-supervised_recon_weight=1", 30)
    multi = _metrics("multitask-semisupervised", "multitask", 30)
    assert semi["test_recon"] < 0.3 * semi["input_var"]  # measured 0.65 vs 4.73
    assert multi["parity_acc"] > 0.8  # measured 86.7 %
    for run in (semi, multi):
        assert run["test_acc"] > classifier["test_acc"] - 0.03


def test_kl_sparsity_holds_the_mean_code_activation_near_rho_on_mnist() -> None:
    def m(key: str) -> dict[str, float]:
        return _metrics("sparse-autoencoder-mnist", key, 3, subset=3000)

    none, l1, kl, topk = m("none"), m("L1"), m("KL"), m("TopK")
    assert kl["mean_activation"] == pytest.approx(0.05, abs=0.02)  # measured 0.056 (rho 0.05)
    assert l1["l0"] < 0.8 * none["l0"]  # measured 470 vs 650 active codes (coefficient 0.01)
    assert topk["l0"] == 32.0


def test_ar_lowers_activations_and_tar_their_changes_in_the_lstm_language_model() -> None:
    from reglab.data import DatasetNotFoundError, gutenberg

    try:
        gutenberg()
    except DatasetNotFoundError:
        pytest.skip("Gutenberg not fetched here (reglab data get gutenberg)")

    def m(key: str) -> dict[str, float]:
        config = _points("language-model-ar-tar")[key]
        options = {**config.raw["model"]["options"], "emb_size": 32, "hidden_size": 64}
        config = config.override(  # a smaller model on fewer tokens
            {"data": {"subset": 10000}, "train": {"epochs": 2}, "model": {"options": options}}
        )
        return run_trial(config, 0).metrics

    none, ar, tar = m("none"), m("AR"), m("TAR")
    # Same seed, data and initialisation: only the penalty differs. With this model on 20,000
    # tokens AR cut E[h²] by 25 % and TAR cut E[Δh²] by 2 %; docs/results.md has the full run.

    assert ar["act_sq"] < 0.9 * none["act_sq"]
    assert tar["act_diff_sq"] < none["act_diff_sq"]
    assert tar["act_sq"] > ar["act_sq"]  # TAR does not do AR's job


def test_adam_l2_makes_near_zeros_where_adamw_shrinks_every_weight() -> None:
    """Under Adam an L2 penalty's gradient is divided by each coordinate's gradient RMS: the
    weakest strength already leaves 10x more near-zero weights than plain Adam (measured at
    this budget: 13.5 % vs 1.3 %), while AdamW's strongest decay shrinks the kernel norm
    (measured 13 %) and leaves the near-zero fraction where plain Adam has it (1.5 %)."""
    adam = _metrics("adam-l2-vs-adamw", "Adam", 10)
    l2 = _metrics("adam-l2-vs-adamw", "Adam_L2_l2=1e-05", 10)
    adamw = _metrics("adam-l2-vs-adamw", "AdamW_weight_decay=1", 10)
    assert l2["weight_small_frac"] > 5 * adam["weight_small_frac"], (l2, adam)
    assert adamw["weight_small_frac"] < 2 * adam["weight_small_frac"], (adamw, adam)
    assert adamw["weight_norm"] < 0.92 * adam["weight_norm"]
    assert adamw["test_acc"] > adam["test_acc"] - 0.01


def test_proximal_l1_gives_exact_zeros_at_the_subgradients_accuracy() -> None:
    """Plain SGD, matched λ: the two reach the same accuracy and norm (measured 71.8 vs
    72.0 %, 11.01 vs 11.01 at 10 epochs), but only the proximal step makes exact zeros
    (measured 17 % vs none)."""
    subgradient = _metrics("proximal-l1", "subgradient_L1_l1=0.001", 10)
    proximal = _metrics("proximal-l1", "proximal_L1_proximal_l1=0.001", 10)
    assert subgradient["weight_zero_frac"] == 0.0
    assert proximal["weight_zero_frac"] > 0.1, proximal
    assert abs(proximal["test_acc"] - subgradient["test_acc"]) < 0.02
    assert proximal["weight_norm"] == pytest.approx(subgradient["weight_norm"], rel=0.02)


def _last_train_loss(study: str, key: str, **overrides: dict) -> tuple[dict, float]:
    config = _points(study)[key].override(overrides)
    outcome = run_trial(config, 0)
    return outcome.metrics, outcome.history[-1]["loss"]


_SMALL_CNN = {"train": {"epochs": 8}, "data": {"subset": 500}}


def test_affine_augmentation_helps_a_cnn_and_mixing_softens_it() -> None:
    """The full run: affine augmentation +1.0 point and half the gap; mixup and CutMix lower
    accuracy at this budget and leave the net under-confident. Here (500 digits, 8 epochs,
    measured): affine 93.1 vs 91.4 %; training loss 0.49 vs 0.07 (augmented batches are
    harder); ECE 5.8 % (mixup) and 18 % (CutMix) vs 2.9 %."""
    none, none_loss = _last_train_loss("augmentation-cnn", "none", **_SMALL_CNN)
    affine, affine_loss = _last_train_loss("augmentation-cnn", "affine", **_SMALL_CNN)
    assert affine["test_acc"] > none["test_acc"] + 0.005, (affine["test_acc"], none["test_acc"])
    assert affine_loss > 3 * none_loss
    for key in ("mixup", "cutmix"):
        mixed, mixed_loss = _last_train_loss("augmentation-cnn", key, **_SMALL_CNN)
        assert mixed_loss > 3 * none_loss, key  # soft targets: the loss cannot reach zero
        assert mixed["test_ece"] > none["test_ece"], key


def test_dropout_family_regularizes_cnns_and_droppath_a_resnet() -> None:
    """The full run: no dropout variant beats the plain CNN at this budget (all within 0.4
    points); spatial dropout and DropBlock raise the training loss (they regularize) without
    breaking the net (plain dropout is the dropout-maxnorm study's; its 20-pass MC evaluation
    on 10,000 test images is too slow for here). DropPath on the ResNet (digits, 10 epochs,
    measured): training loss 0.56 vs 0.18."""
    none, none_loss = _last_train_loss("dropout-cnn", "none", **_SMALL_CNN)
    for key in ("spatial_dropout", "DropBlock"):
        variant, loss = _last_train_loss("dropout-cnn", key, **_SMALL_CNN)
        assert loss > 1.4 * none_loss, (key, loss, none_loss)  # measured 1.7x, 2.2x
        assert variant["test_acc"] > none["test_acc"] - 0.03, key
    digits = {"train": {"epochs": 10}, "data": {"name": "digits", "subset": 0}}
    plain, plain_loss = _last_train_loss("dropout-cnn", "ResNet", **digits)
    dropped, dropped_loss = _last_train_loss("dropout-cnn", "ResNet_DropPath", **digits)
    assert dropped_loss > 2 * plain_loss
    assert dropped["test_acc"] > plain["test_acc"] - 0.03
