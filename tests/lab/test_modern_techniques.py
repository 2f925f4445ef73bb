"""The issue-25 techniques as grid keys of the lab: ``train.optimizer = "sam"`` with ``sam``,
``rdrop``, ``confidence_penalty``, ``prune``, ``input_gradient``, ``layer_decay``,
``semi_supervised.method = "mean_teacher" | "pi_model"`` and the spectral-norm / orthogonal
constraints as rules. Parsing (each value once, with its key path) and one effect per
technique on real data (digits; small and seeded), plus the ``sparsity-routes`` study."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from reglab.lab import StudyError, expand, find_study, parse_study, run_trial
from reglab.lab.work.stacking import stack_key
from reglab.lab.work.training import make_optimizer
from reglab.losses import symmetric_kl
from reglab.optim import SAM

BASE: dict[str, Any] = {
    "name": "s",
    "data": {"subset": 600},
    "model": {"sizes": [64, 64, 10]},
    "train": {"epochs": 12},
}


def _raw(entry: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {**BASE, **sections, "grid": [{"name": "a", **entry}]}


def _config(entry: dict[str, Any] | None = None, **sections: Any) -> Any:
    return expand(parse_study(_raw(entry or {}, **sections), origin="s"))[0].config


@functools.cache
def _trial(entry_json: str, sections_json: str = "{}", seed: int = 0) -> Any:
    """One trial (cached: several tests compare the same baseline)."""
    config = _config(json.loads(entry_json), **json.loads(sections_json))
    return run_trial(config, seed)


def trial(entry: dict[str, Any] | None = None, seed: int = 0, **sections: Any) -> Any:
    return _trial(
        json.dumps(entry or {}, sort_keys=True), json.dumps(sections, sort_keys=True), seed
    )


def _digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    from reglab.lab import load_data

    (_, test), _ = load_data(_config().data)
    return test


DROPOUT = {"sizes": [64, 64, 10], "dropout": 0.3}


# -- parsing ------------------------------------------------------------------------------
def test_tables_parse_with_defaults_and_shorthands() -> None:
    config = _config(
        {
            "train": {"optimizer": "sam"},
            "sam": {"rho": 0.1, "adaptive": True},
            "rdrop": 2,
            "confidence_penalty": 0.5,
            "prune": 0.8,
            "layer_decay": 0.75,
        },
        model=DROPOUT,
    )
    assert (config.sam.rho, config.sam.adaptive, config.sam.base) == (0.1, True, "sgd")
    assert config.rdrop.alpha == 2.0
    assert config.confidence_penalty.beta == 0.5
    assert (config.prune.amount, config.prune.scope, config.prune.schedule) == (
        0.8,
        "global",
        "gradual",
    )
    assert config.prune.window(12) == (0, 9)  # the last quarter fine-tunes at 80 % zeros
    assert config.layer_decay.decay == 0.75
    shown = config.to_dict()
    assert shown["prune"] == {
        "amount": 0.8,
        "scope": "global",
        "schedule": "gradual",
        "begin": 0,
        "end": None,
        "frequency": 10,
    }
    # optimizer = "sam" without a table: the defaults, explicitly
    plain = _config({"train": {"optimizer": "sam"}})
    assert plain.sam is not None
    assert plain.sam.rho == 0.05
    assert _config().sam is None
    ig = _config({"input_gradient": {"coefficient": 0.1, "target": "jacobian"}}).input_gradient
    assert (ig.coefficient, ig.target, ig.n_projections) == (0.1, "jacobian", 1)
    semi = _config(
        {"semi_supervised": {"method": "mean_teacher", "ema_decay": 0.9, "ramp_up": 2}},
        data={"subset": 600, "labels": 100},
    ).semi_supervised
    assert (semi.method, semi.ema_decay, semi.ramp_up, semi.rows) == ("mean_teacher", 0.9, 2, "all")
    assert _config({"semi_supervised": {}}).semi_supervised.method == "reconstruction"


G = r"^s\.grid\[0\]\."


@pytest.mark.parametrize(
    ("entry", "sections", "message"),
    [
        (
            {"sam": {"rho": 0.1}},
            {},
            G + r"sam: applies with train\.optimizer = 'sam' \(this point has 'adam'\)",
        ),
        (
            {"train": {"optimizer": "sam"}, "sam": {"rho": 0.0}},
            {},
            G + r"sam\.rho: must be a finite number > 0 \(got 0\.0\)",
        ),
        (
            {"train": {"optimizer": "sam"}, "sam": {"base": "lbfgs"}},
            {},
            G + r"sam\.base: expected 'sgd', 'adam' or 'adamw' \(got 'lbfgs'\)",
        ),
        (
            {"train": {"optimizer": "sam"}, "sam": {"radius": 0.1}},
            {},
            G + r"sam\.radius: unknown key; allowed: adaptive, base, rho",
        ),
        (
            {"train": {"optimizer": "rmsprop"}},
            {},
            G + r"train\.optimizer: expected 'adam', 'adamw', 'sgd' or 'sam' \(got 'rmsprop'\)",
        ),
        (
            {"rdrop": 1.0},
            {},
            G + r"rdrop: needs a model with dropout \(e\.g\. model\.dropout = 0\.3\)",
        ),
        ({"rdrop": -1}, {"model": DROPOUT}, G + r"rdrop\.alpha: must be a finite number >= 0"),
        (
            {"rdrop": 1.0, "semi_supervised": {}},
            {"model": DROPOUT},
            G + r"rdrop: cannot be combined with semi_supervised \(the shared model has its own",
        ),
        (
            {"confidence_penalty": "high"},
            {},
            G + r"confidence_penalty\.beta: expected a number \(got 'high'\)",
        ),
        (
            {"prune": 1.5},
            {},
            G + r"prune\.amount: must be a finite number >= 0 and <= 1 \(got 1\.5\)",
        ),
        ({"prune": {}}, {}, G + r"prune\.amount: expected a number \(got None\)"),
        (
            {"prune": {"amount": 0.5, "scope": "net"}},
            {},
            G + r"prune\.scope: expected 'global' or 'layer'",
        ),
        (
            {"prune": {"amount": 0.5, "end": 20}},
            {},
            G + r"prune: needs begin < end <= train\.epochs = 12",
        ),
        (
            {"prune": {"amount": 0.5, "begin": 12, "schedule": "one_shot"}},
            {},
            G
            + r"prune: needs begin < end <= train\.epochs = 12 \(one_shot: begin < train\.epochs\)",
        ),
        (
            {"prune": 0.5, "ensemble": {"members": 2}},
            {},
            G + r"ensemble: cannot be combined with prune",
        ),
        (
            {"input_gradient": 0.1, "rdrop": 1.0},
            {"model": DROPOUT},
            G + r"input_gradient: cannot be combined with rdrop",
        ),
        (
            {"input_gradient": {"target": "hessian"}},
            {},
            G + r"input_gradient\.target: expected 'loss' or 'jacobian' \(got 'hessian'\)",
        ),
        ({"layer_decay": 0}, {}, G + r"layer_decay\.decay: must be a finite number > 0 and <= 1"),
        ({"layer_decay": 1.5}, {}, G + r"layer_decay\.decay: must be a finite number > 0 and <= 1"),
        (
            {"semi_supervised": {"method": "mean_teacher", "recon_weight": 1.0}},
            {},
            G + r"semi_supervised\.recon_weight: does not apply to method = 'mean_teacher' "
            r"\(its keys: consistency, ramp_up, noise, rows, ema_decay\)",
        ),
        (
            {"semi_supervised": {"consistency": 1.0}},
            {},
            G + r"semi_supervised\.consistency: does not apply to method = 'reconstruction'",
        ),
        (
            {"semi_supervised": {"method": "pi_model", "ema_decay": 0.9}},
            {},
            G + r"semi_supervised\.ema_decay: does not apply to method = 'pi_model'",
        ),
        (
            {"semi_supervised": {"method": "teacher"}},
            {},
            G + r"semi_supervised\.method: expected 'reconstruction', 'mean_teacher' or 'pi_model'",
        ),
        (
            {"semi_supervised": {"method": "pi_model", "rows": "unlabelled"}},
            {},
            G + r"semi_supervised\.rows: 'unlabelled' needs unlabelled rows: set data\.labels > 0",
        ),
        (
            {"prune": 0.5},
            {"model": {"kind": "autoencoder", "sizes": [64, 16]}},
            G + r"prune: applies to classifier trials \(model\.kind = 'mlp', 'cnn', 'resnet' or a "
            r"factory\), not 'autoencoder'",
        ),
        (
            {
                "rules": {
                    "fc*": {
                        "kernel_constraint": {
                            "class_name": "spectral_norm",
                            "config": {"max_value": 0.0},
                        }
                    }
                }
            },
            {},
            G + r'rules\."fc\*"\.kernel_constraint: The \'max_value\' parameter of SpectralNorm',
        ),
    ],
)
def test_bad_values_fail_at_parse_time_with_their_key_path(
    entry: dict[str, Any], sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(StudyError, match=message):
        parse_study(_raw(entry, **sections), origin="s")


def test_points_with_these_techniques_train_alone() -> None:
    assert stack_key(_config()) is not None  # a plain deterministic point stacks
    for entry in (
        {"train": {"optimizer": "sam"}},
        {"confidence_penalty": 0.1},
        {"prune": 0.5},
        {"input_gradient": 0.1},
        {"layer_decay": 0.5},
        {"rules": {"fc*": {"kernel_constraint": "spectral_norm"}}},
        {"rules": {"fc*": {"kernel_constraint": "orthogonal"}}},
    ):
        assert stack_key(_config(entry)) is None, entry  # a stack's kernels are not one matrix


# -- effects on real data -----------------------------------------------------------------
def test_sam_trains_and_differs_from_its_base_optimizer() -> None:
    sgd = {"optimizer": "sgd", "lr": 0.05, "epochs": 12}
    config = _config({"train": {**sgd, "optimizer": "sam"}, "sam": {"rho": 0.05}})
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, config.train, sam=config.sam)
    assert isinstance(optimizer, SAM)
    assert isinstance(optimizer.base_optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    base = trial({"train": sgd}).metrics
    sam = trial({"train": {**sgd, "optimizer": "sam"}, "sam": {"rho": 0.05}}).metrics
    asam = trial({"train": {**sgd, "optimizer": "sam"}, "sam": {"rho": 0.5, "adaptive": True}})
    for m in (base, sam, asam.metrics):
        assert m["test_acc"] > 0.85, m  # all three learn digits
    assert sam["test_loss"] != base["test_loss"]
    assert sam["weight_norm"] != base["weight_norm"]
    assert asam.metrics["test_loss"] != sam["test_loss"]


def _two_pass_kl(net: torch.nn.Module, x: torch.Tensor) -> float:
    net.train()  # dropout on: two masks
    torch.manual_seed(0)
    with torch.no_grad():
        kl = float(symmetric_kl(net(x), net(x)))
    net.eval()
    return kl


def test_rdrop_lowers_the_kl_between_two_dropout_passes() -> None:
    x, _ = _digits_test()
    plain = trial(model=DROPOUT)
    rdrop = trial({"rdrop": 5.0}, model=DROPOUT)
    before, after = _two_pass_kl(plain.model, x), _two_pass_kl(rdrop.model, x)
    assert after < 0.5 * before, (before, after)
    assert rdrop.metrics["test_acc"] > plain.metrics["test_acc"] - 0.03


def _entropy(net: torch.nn.Module, x: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        p = net(x).softmax(-1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


def test_confidence_penalty_raises_the_output_entropy() -> None:
    x, _ = _digits_test()
    fast = {"lr": 1e-2}  # to a confident fit (entropy 0.2 nats; at lr 1e-3: 1.8 of 2.3)
    plain = trial({"train": fast})
    penalized = trial({"train": fast, "confidence_penalty": 1.0})
    assert _entropy(penalized.model, x) > 3 * _entropy(plain.model, x)  # measured: 9x
    # held-out batches take the plain loss: val/test losses stay cross-entropies
    assert penalized.metrics["test_loss"] > 0


def test_prune_leaves_the_requested_fraction_of_exact_zeros() -> None:
    pruned = trial({"prune": {"amount": 0.7}})
    linears = [m for m in pruned.model.modules() if isinstance(m, torch.nn.Linear)]
    n = sum(m.weight.numel() for m in linears)
    assert pruned.metrics["weight_zero_frac"] == pytest.approx(round(0.7 * n) / n, abs=1e-12)
    assert all(type(m.weight) is torch.nn.Parameter for m in linears)  # masks made permanent
    per_layer = trial({"prune": {"amount": 0.5, "scope": "layer", "schedule": "one_shot"}})
    for m in per_layer.model.modules():
        if isinstance(m, torch.nn.Linear):
            zeros = int((m.weight == 0).sum())
            assert zeros == round(0.5 * m.weight.numel()), zeros
    assert trial().metrics["weight_zero_frac"] == 0.0
    # 70 % of a 64-64-10 net's weights cost accuracy (measured 0.80 vs 0.90) but it learns
    assert pruned.metrics["test_acc"] > 0.7


def test_spectral_norm_rule_bounds_every_kernel() -> None:
    rule = {"class_name": "spectral_norm", "config": {"max_value": 1.0}}
    bounded = trial({"rules": {"fc*": {"kernel_constraint": rule}}})
    plain = trial()
    for net, limit in ((bounded.model, 1.0 + 1e-3), (plain.model, None)):
        sigmas = [
            float(torch.linalg.matrix_norm(m.weight.detach(), 2))
            for m in net.modules()
            if isinstance(m, torch.nn.Linear)
        ]
        if limit is not None:
            assert max(sigmas) <= limit, sigmas
        else:
            assert max(sigmas) > 1.5, sigmas  # the bound binds on this problem
    orthogonal = trial({"rules": {"fc0": {"kernel_constraint": "orthogonal"}}})
    w = orthogonal.model.fc0.weight.detach()  # (64, 64): square, so W Wᵀ = I
    assert torch.allclose(w @ w.T, torch.eye(64), atol=1e-4)


def _input_grad_norm(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(x), y, reduction="sum"), x)
    return float(g.square().sum(1).mean())


def test_input_gradient_penalty_flattens_the_loss_around_the_inputs() -> None:
    x, y = _digits_test()
    plain, penalized = trial(), trial({"input_gradient": 1.0})
    assert _input_grad_norm(penalized.model, x, y) < 0.5 * _input_grad_norm(plain.model, x, y)


def test_layer_decay_scales_each_layers_learning_rate() -> None:
    config = _config({"layer_decay": 0.5}, model={"sizes": [64, 32, 32, 10]})
    net = config.network()
    optimizer = make_optimizer(net, config.train, layer_decay=config.layer_decay)
    lrs = {id(p): g["lr"] / config.train.lr for g in optimizer.param_groups for p in g["params"]}
    scales = [lrs[id(m.weight)] for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert scales == sorted(scales), scales
    assert scales[-1] == 1.0
    assert scales[0] < 1.0
    # on real data: the first layer moves less from its initialisation than without decay
    torch.manual_seed(0)
    start = config.network().fc0.weight.detach().clone()
    moved = {}
    for name, entry in (("plain", {}), ("decayed", {"layer_decay": 0.1})):
        out = trial(entry, model={"sizes": [64, 32, 32, 10]})
        moved[name] = float((out.model.fc0.weight.detach() - start).norm())
    assert moved["decayed"] < 0.5 * moved["plain"], moved


def _noise_disagreement(net: torch.nn.Module, x: torch.Tensor, noise: float) -> float:
    net.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        p = net(x + noise * torch.randn_like(x)).softmax(-1)
        q = net(x + noise * torch.randn_like(x)).softmax(-1)
    return float((p - q).square().mean())


@pytest.mark.parametrize("method", ["pi_model", "mean_teacher"])
def test_consistency_training_makes_predictions_agree_under_input_noise(method: str) -> None:
    """Against the same training (100 labels, the same input noise) without the consistency
    term: measured 2.5x (Π-model) and 7x (mean teacher) less disagreement."""
    x, _ = _digits_test()
    data = {"subset": 600, "labels": 100}

    def run(consistency: float) -> Any:
        semi = {"method": method, "consistency": consistency, "noise": 0.3}
        return trial({"train": {"lr": 1e-2}, "semi_supervised": semi}, data=data)

    plain, consistent = run(0.0), run(100.0)
    before = _noise_disagreement(plain.model, x, 0.3)
    after = _noise_disagreement(consistent.model, x, 0.3)
    assert after < 0.6 * before, (before, after)
    if method == "mean_teacher":
        assert 0.5 < consistent.metrics["teacher_test_acc"] <= 1.0
    else:
        assert "teacher_test_acc" not in consistent.metrics


# -- the built-in studies -----------------------------------------------------------------
@functools.cache
def _study_metrics(study: str, key: str, epochs: int) -> dict[str, float]:
    parsed, _, _ = find_study(study)
    config = {p.key: p.config for p in expand(parsed)}[key]
    return run_trial(config.override({"train": {"epochs": epochs}}), 0).metrics


def test_sparsity_routes_three_kinds_of_exact_zeros() -> None:
    keys = {p.key for p in expand(find_study("sparsity-routes")[0])}
    none = _study_metrics("sparsity-routes", "none", 20)
    proximal = _study_metrics("sparsity-routes", "proximal_L1_proximal_l1=0.001", 20)
    activity = _study_metrics("sparsity-routes", "activity_L1_l1=0.01", 20)
    pruned = _study_metrics("sparsity-routes", "pruning_amount=0.9", 20)
    assert {"none", "pruning_amount=0.5", "proximal_L1_proximal_l1=0.003"} <= keys
    assert none["weight_zero_frac"] == 0.0
    assert activity["weight_zero_frac"] == 0.0
    assert proximal["weight_zero_frac"] > 0.3  # weights: the proximal step (measured 0.40)
    assert pruned["weight_zero_frac"] == pytest.approx(0.9, abs=1e-3)  # weights: the mask
    assert activity["zero_frac"] > none["zero_frac"] + 0.3  # activations: the activity L1
    # measured 86.2-91.8 % vs 94.7 % at 20 epochs, 20 % of the rows held out for validation
    # (the study's default since it chooses on validation; 91-93 % with every row)
    for m in (proximal, activity, pruned):
        assert m["test_acc"] > none["test_acc"] - 0.1, m


def test_modern_regularizers_study_parses_with_every_technique() -> None:
    points = {p.key: p.config for p in expand(find_study("modern-regularizers")[0])}
    assert any(c.sam is not None and c.sam.adaptive for c in points.values())
    assert any(c.rdrop is not None for c in points.values())
    assert any(c.confidence_penalty is not None for c in points.values())
    assert any(c.rules for c in points.values())
    assert {c.model.kind for c in points.values()} == {"mlp", "cnn"}
