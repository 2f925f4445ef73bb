"""Stacked trials: grid points that share an architecture and training settings, trained at
once as one :class:`~reglab.ensembles.ModelStack` with per-member coefficients.

A study is mostly a grid of one model that differs in seed and penalty coefficients. Such
trials are popped together by one worker and trained as members of a stack: member ``k`` is
initialised under its own seed, sees its own batch order (the same permutation ``fit`` would
draw from that seed), and gets its own coefficients as ``(K,)`` tensors of L1L2 penalties
(``L1(a)`` is ``L1L2(a, 0)``, ``L2(b)`` is ``L1L2(0, b)``, an absent rule is zero). The
summed loss gives each member exactly the gradient it would get alone, and the optimizer is
elementwise, so each member trains as it would alone — up to floating-point rounding of the
batched GEMMs and the fused optimizer step (the metrics agree to about 1e-3; tested).

What stacks (:func:`stack_key`): MLP classifier trials with no randomness beyond
initialisation and batch order (no dropout, noise, augmentation or pre-training), whose rules
are L1 / L2 / L1L2 penalties with number coefficients, with the same constraints, the same
loss and no per-trial training logic (early stopping, post-hoc stopping curves, a norm bound,
shared representations). Everything else runs alone, as before. A stacked trial's history
has no ``penalty`` column (the terms are the stack's totals), and its ``seconds`` are the
stack's training time divided by the number of members. When a member's loss or penalty
turns non-finite, :func:`run_stacked` raises ``Diverged`` and the members are trained alone
(so the one that diverged is named with its own step and term).
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab import constraints
from reglab.ensembles import ModelStack, fused_optimizer
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import load_data
from reglab.lab.trials.classifier import classifier_metrics
from reglab.lab.trials.training import TrialContext, TrialOutcome, make_optimizer
from reglab.losses import smooth_targets
from reglab.penalties import L1L2
from reglab.penalties.norms import number_coefficients
from reglab.regularization.rules import Bindings, resolve
from reglab.training.divergence import Diverged, FiniteWatch, all_finite

__all__ = ["run_stacked", "stack_key"]

#: Techniques whose trials run alone (per-trial logic a stack does not replicate).
_ALONE = (
    "proximal_l1",
    "schedules",
    "early_stopping",
    "post_hoc_stopping",
    "norm_bound",
    "semi_supervised",
    "multitask",
    "ensemble",
    "pretrain",
    "augment",
)


def _bindings(config: TrialConfig) -> Bindings:
    """The point's rules resolved against its network (on the meta device: no memory)."""
    if not config.rules:
        return Bindings((), (), ())
    with torch.device("meta"):
        return resolve(config.network(), config.rules_mapping(), "batch")


def _canonical(config: TrialConfig) -> tuple[Hashable, dict[tuple[str, str], tuple]] | None:
    """(what must be equal to stack, this point's coefficients by (module, kind)), or None
    when the point cannot be stacked."""
    if config.kind != "classifier" or not config.model_kind.stackable:
        return None
    if config.stochastic or any(getattr(config, k) for k in _ALONE):
        return None
    bindings = _bindings(config)
    coefficients: dict[tuple[str, str], tuple] = {}
    for b in bindings.weights:
        pair = number_coefficients(b.penalty)
        if pair is None:
            return None
        module, kind = b.term.rsplit(".", 1)
        coefficients[(module, kind)] = pair
    reductions = []
    for a in bindings.activities:
        pair = number_coefficients(a.penalty)
        if pair is None:
            return None
        coefficients[(a.module_name, "activity")] = pair
        if a.reduction != "batch":
            reductions.append((a.module_name, a.reduction))
    fixed = []
    for c in bindings.constraints:
        try:
            fixed.append(
                (c.param_name, json.dumps(constraints.serialize(c.constraint), default=str))
            )
        except (ValueError, TypeError):  # a custom callable: nothing to compare
            return None
    same = json.dumps(
        {
            "data": config.data.to_dict(),
            "model": config.model.to_dict(),
            "train": config.train.to_dict(),
            "label_smoothing": config.label_smoothing and config.label_smoothing.to_dict(),
            "constraints": sorted(fixed),
            "reductions": sorted(reductions),
        },
        sort_keys=True,
        default=str,
    )
    return same, coefficients


def stack_key(config: TrialConfig) -> Hashable | None:
    """Trials with equal keys can train in one stack; None: this one trains alone."""
    canonical = _canonical(config)
    return None if canonical is None else canonical[0]


def _rules(members: Sequence[TrialConfig]) -> dict[str, dict[str, Any]]:
    """One rule per module with ``(K,)`` L1L2 coefficients, and the shared constraints."""
    per_member = [_canonical(c)[1] for c in members]  # type: ignore[index]
    keys = sorted({k for m in per_member for k in m})
    rules: dict[str, dict[str, Any]] = {}
    for module, kind in keys:
        l1 = torch.tensor([m.get((module, kind), (0.0, 0.0))[0] for m in per_member])
        l2 = torch.tensor([m.get((module, kind), (0.0, 0.0))[1] for m in per_member])
        rules.setdefault(_literal(module), {})[kind] = L1L2(l1.double(), l2.double())
    bindings = _bindings(members[0])
    for a in bindings.activities:
        if a.reduction != "batch":
            rules.setdefault(_literal(a.module_name), {})["activity_reduction"] = a.reduction
    for c in bindings.constraints:
        module, attr = c.param_name.rsplit(".", 1) if "." in c.param_name else ("", c.param_name)
        kind = "bias_constraint" if "bias" in attr else "kernel_constraint"
        rules.setdefault(_literal(module), {})[kind] = c.constraint
    return rules


def _literal(name: str) -> str:
    """A glob matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _per_sample_loss(config: TrialConfig) -> Any:
    """The trial's loss per row: cross-entropy, label-smoothed when the point says so."""
    smoothing = config.label_smoothing
    if smoothing is None or smoothing.eps == 0:
        return lambda logits, y: F.cross_entropy(logits, y, reduction="none")

    def smoothed(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        targets = smooth_targets(y, logits.shape[-1], smoothing.eps, smoothing.form)
        return -(targets * logits.log_softmax(-1)).sum(-1)

    return smoothed


def _optimizer(stack: ModelStack, config: TrialConfig) -> torch.optim.Optimizer:
    # The stack mirrors its members' parameter names: the same kernels get the decay.
    return make_optimizer(stack, config.train, fused_optimizer)


def run_stacked(
    members: Sequence[tuple[TrialConfig, int]], context: TrialContext | None = None
) -> list[TrialOutcome]:
    """Train ``(config, seed)`` members that share a :func:`stack_key` as one stack; return
    each member's outcome, as :func:`~reglab.lab.run_trial` would have."""
    configs = [c for c, _ in members]
    seeds = [s for _, s in members]
    keys = {stack_key(c) for c in configs}
    if None in keys or len(keys) != 1:
        raise ValueError("run_stacked needs members with one common stack_key")
    first = configs[0]
    (train, test), val = load_data(first.data)
    labelled = train[1] >= 0
    x, y = train[0][labelled], train[1][labelled]
    monitor = val if val is not None else test  # learning curves, as run_classifier
    models = []
    for config, seed in members:
        torch.manual_seed(seed)
        models.append(config.network())
    k, n, batch = len(models), len(x), first.train.batch_size
    stack = ModelStack(models)
    rules = _rules(configs)
    reg = reglab.attach(stack, rules) if rules else None
    optimizer = _optimizer(stack, first)
    loss_of = _per_sample_loss(first)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
    watch, step = FiniteWatch(torch.device("cpu")), 0
    start = time.perf_counter()
    for epoch in range(first.train.epochs):
        stack.train()
        epoch_start = time.perf_counter()
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])  # (K, n)
        loss_sum = torch.zeros(k, dtype=torch.float64)
        acc_sum = torch.zeros(k, dtype=torch.float64)
        steps = 0
        for begin in range(0, n, batch):
            rows = orders[:, begin : begin + batch]  # (K, b)
            out = stack(x[rows], per_member=True)  # (K, b, C)
            per_member = loss_of(out.flatten(0, 1), y[rows].flatten()).view(k, -1).mean(1)
            total = per_member.sum() + (reg.penalty() if reg is not None else 0.0)
            step += 1
            found = watch.add(step, {"loss": total})
            if found is not None:  # the Sweep trains each member alone, to say which diverged
                raise Diverged(f"{found} (epoch {epoch + 1}) of a stack of {k}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if reg is not None:
                reg.after_step()
            b = rows.shape[1]
            with torch.no_grad():
                loss_sum += per_member.detach().double() * b
                acc_sum += (out.argmax(-1) == y[rows]).double().mean(1) * b
            steps += 1
        if not all_finite(stack):
            raise Diverged(f"a parameter is non-finite after epoch {epoch + 1} of a stack of {k}")
        logs = {"loss": (loss_sum / n).tolist(), "acc": (acc_sum / n).tolist()}
        logs.update(_held_out(stack, monitor, loss_of, batch))
        step_time = (time.perf_counter() - epoch_start) / steps
        for i in range(k):
            histories[i].append(
                {
                    **{key: values[i] for key, values in logs.items()},
                    "step_time": step_time,
                    "epoch_time": time.perf_counter() - epoch_start,
                    "epoch": float(epoch),
                }
            )
        if context is not None and context.progress is not None:
            context.progress(epoch + 1, first.train.epochs)
    seconds = (time.perf_counter() - start) / k
    if reg is not None:
        reg.remove()
    outcomes = []
    for net, config, seed, history in zip(stack.unstack(), configs, seeds, histories, strict=True):
        net.eval()
        metrics = classifier_metrics(net, train, val, test, seed)
        reliability = metrics.pop("reliability")
        metrics.update(epochs_run=float(config.train.epochs), seconds=seconds)
        outcomes.append(TrialOutcome(metrics, history, net, reliability, {"stacked": k}))
    return outcomes


@torch.no_grad()
def _held_out(
    stack: nn.Module, data: tuple[torch.Tensor, torch.Tensor], loss_of: Any, batch: int
) -> dict[str, list[float]]:
    """``val_loss`` and ``val_acc`` of every member, in eval mode (``fit``'s batching)."""
    stack.eval()
    x, y = data
    loss_sum = acc_sum = None
    for begin in range(0, len(x), batch):
        out = stack(x[begin : begin + batch])  # (K, b, C)
        yb = y[begin : begin + batch]
        losses = loss_of(out.flatten(0, 1), yb.repeat(out.shape[0])).view(out.shape[0], -1)
        part_loss = losses.mean(1).double() * len(yb)
        part_acc = (out.argmax(-1) == yb).double().mean(1) * len(yb)
        loss_sum = part_loss if loss_sum is None else loss_sum + part_loss
        acc_sum = part_acc if acc_sum is None else acc_sum + part_acc
    stack.train()
    return {"val_loss": (loss_sum / len(x)).tolist(), "val_acc": (acc_sum / len(x)).tolist()}
