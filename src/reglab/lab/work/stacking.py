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

What stacks (:func:`stack_key`): MLP classifier trials whose randomness is initialisation,
batch order, dropout (``dropout``, ``input_dropout``), Gaussian input noise (``input_noise``),
augmentation (``augment``), weight noise (``weight_noise``) or mixing (``mix``) — not
pre-training — whose rules are L1 / L2 / L1L2 penalties with number coefficients (none with
weight noise: it stacks through vmap), with the same constraints, the same loss and no
per-trial training logic (early stopping, post-hoc stopping curves, a norm bound, shared
representations), and that no other grid point starts from (``[train] init`` naming it:
those train alone, so the weights others start from are exactly a lone trial's).
Everything else runs alone, as before. A stacked trial's history
has no ``penalty`` column (the terms are the stack's totals), and no ``seconds``: a member
has no training time of its own. It records ``stack_seconds`` (the whole stack's training
time, the same value in every member) and ``stack_size`` instead; the report counts each
stack's time once.

Convnets (``cnn``) run alone: their vmapped stack was measured slower end to end than the
trials one after another on CPU (docs/guide/performance.md, "Stacked studies"), though
``ModelStack`` can hold them (per-member batch norm).

Randomness per member: dropout runs as ``nn.Dropout`` on the stack's ``(K, B, F)``
activations, input noise / augmentation on the stack's ``(B·K, F)`` rows, weight noise per
``(K, ...)`` weight under vmap, mixing member by member, so every member draws its own masks,
noise, affine maps and mixes — independent across members, from the one generator the
stack's trial seeds. A stacked member is therefore the lone trial *in distribution*, not
bitwise (its draws differ from the lone trial's); tests/lab/test_stacked_randomness.py checks
mask rates, cross-member independence and accuracies against lone trials statistically.

When a member's loss or penalty turns non-finite, :func:`run_stacked` raises ``Diverged`` and
the members are trained alone (so the one that diverged is named with its own step and term).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import nn

import reglab
from reglab import constraints
from reglab.ensembles import ModelStack, fused_optimizer
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import load_data
from reglab.lab.work.classifier import _mixer, _transform, classifier_metrics, criterion
from reglab.lab.work.compaction import Decide, MemberStopping, Stoppable, member_row
from reglab.lab.work.device import to_device
from reglab.lab.work.init import load_init, wanted
from reglab.lab.work.training import TrialContext, TrialOutcome, train_model
from reglab.penalties import L1L2
from reglab.penalties.norms import number_coefficients
from reglab.regularization.rules import Bindings, resolve
from reglab.training import Callback, Diverged

__all__ = ["run_stacked", "stack_key", "stack_rules"]

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
    "sam",
    "rdrop",
    "confidence_penalty",
    "prune",
    "input_gradient",
    "layer_decay",
)
#: Constraints on a whole kernel matrix: a stack's kernel holds every member's, so they would
#: mix the members (the per-unit norm constraints stack fine).
_MATRIX_CONSTRAINTS = (constraints.SpectralNorm, constraints.Orthogonal)


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
    # dropout, noise, augmentation and mixing stack (drawn per member): see the module doc
    if any(getattr(config, k) for k in _ALONE):
        return None
    vmapped = config.model.kind != "mlp" or config.weight_noise  # type: ignore[attr-defined]
    if vmapped and config.rules:
        # through ModelStack's vmap path (WeightNoise-wrapped Linears), where
        # activity hooks cannot run and per-unit constraints / per-member coefficients are not
        # laid out for (K, ...) kernels
        return None
    if wanted(config):  # others start from its trials: trained alone, exactly as they start
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
    if any(isinstance(c.constraint, _MATRIX_CONSTRAINTS) for c in bindings.constraints):
        return None
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
            "input_noise": config.input_noise,
            "weight_noise": config.weight_noise,
            "mix": config.mix and config.mix.to_dict(),
            "augment": config.augment and config.augment.to_dict(),
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


def stack_rules(members: Sequence[TrialConfig]) -> dict[str, dict[str, Any]]:
    """The stack's rules: one per module with ``(K,)`` L1L2 coefficients (member ``k``'s
    value at index ``k``; float64), and the shared constraints."""
    per_member = [_canonical(c)[1] for c in members]  # type: ignore[index]
    keys = sorted({k for m in per_member for k in m})
    rules: dict[str, dict[str, Any]] = {}
    for module, kind in keys:
        # float64 from the numbers: the members' coefficients exactly as given
        l1 = [m.get((module, kind), (0.0, 0.0))[0] for m in per_member]
        l2 = [m.get((module, kind), (0.0, 0.0))[1] for m in per_member]
        rules.setdefault(_literal(module), {})[kind] = L1L2(
            torch.tensor(l1, dtype=torch.float64), torch.tensor(l2, dtype=torch.float64)
        )
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


class _MemberBatches:
    """Each member's batches of in-memory ``(x, y)``, member ``k`` in its own order (the
    permutation ``fit`` draws from seed ``k``): yields ``x`` of shape ``(b, K, F)`` and ``y``
    of shape ``(b, K)`` (batch first, so ``fit`` counts ``b`` rows). Iterated once per epoch."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int], batch_size: int
    ) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Any:
        n = len(self.x)
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.generators])  # (K, n)
        orders = orders.to(self.x.device)  # the data may be on an accelerator
        for rows in orders.split(self.batch_size, dim=1):  # (K, b)
            yield self.x[rows].transpose(0, 1), self.y[rows].transpose(0, 1)


class _Rows(nn.Module):
    """A per-example training transform (input noise, augmentation) on the stack's
    ``(b, K, F)`` batches: applied to the ``(b·K, F)`` rows, so each member's copy of a row
    gets its own draw, as it would alone."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class _MemberMix(nn.Module):
    """Mixup / CutMix per member on the stack's ``(b, K, F)`` batches and ``(b, K)`` labels:
    member ``k`` mixes its own batch with its own draw (λ, partner order, box), as alone.
    Returns ``x`` ``(b, K, F)`` and soft targets ``(b, K, C)``."""

    def __init__(self, mix: nn.Module) -> None:
        super().__init__()
        self.mix = mix

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed = [self.mix(x[:, k], y[:, k]) for k in range(x.shape[1])]
        return torch.stack([m[0] for m in mixed], 1), torch.stack([m[1] for m in mixed], 1)


def _member_targets(y: torch.Tensor, k: int) -> torch.Tensor:
    """Each member's targets, member first: labels ``(b, K)`` or soft targets ``(b, K, C)``
    per member (training), or shared labels ``(b,)`` (held out), to ``(K, b[, C])``."""
    return y.transpose(0, 1) if y.ndim >= 2 else y.expand(k, -1)


#: The stack as ``fit`` sees it (``(b, K, F)`` per member, ``(b, F)`` shared -> ``(K, b, C)``);
#: :class:`~reglab.lab.work.compaction.Stoppable` can swap in a compacted stack between epochs.
_PerMember = Stoppable


def _member_losses(loss: Any, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(K,)``: the trial's criterion on each member's output ``(K, b, C)`` and targets
    (``(b, K)`` or soft ``(b, K, C)`` per member, or ``(b,)`` shared), in one vmapped call."""
    return torch.func.vmap(loss)(out, _member_targets(y, out.shape[0]))


class _MemberLoss:
    """What ``fit`` minimises for a stack: the sum of the members' losses. ``logged`` gives
    the ``(K,)`` vector of the batch just computed (``fit`` logs its metrics right after the
    loss of the same batch), so the criterion runs once per batch."""

    def __init__(self, loss: Any) -> None:
        self.loss = loss
        self.last = torch.zeros(())

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.last = _member_losses(self.loss, out, y)
        return self.last.sum()

    def logged(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        del out, y
        return self.last.detach()


def _member_accuracies(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(K,)`` accuracies; soft targets count their arg-max class, as ``accuracy`` does."""
    targets = _member_targets(y, out.shape[0])  # (K, b) or (K, b, C)
    if targets.ndim == 3:
        targets = targets.argmax(-1)
    return (out.argmax(-1) == targets).float().mean(1)


def run_stacked(
    members: Sequence[tuple[TrialConfig, int]],
    context: TrialContext | None = None,
    *,
    rules: dict[str, dict[str, Any]] | None = None,
    callbacks: Sequence[Callback] = (),
    decide: Decide | None = None,
) -> list[TrialOutcome]:
    """Train ``(config, seed)`` members that share a :func:`stack_key` as one stack; return
    each member's outcome, as :func:`~reglab.lab.run_trial` would have.

    The stack trains through the lone trials' loop (:func:`~reglab.lab.work.training.
    train_model`, i.e. :func:`reglab.fit`) with the trial's criterion applied per member: the
    loss ``fit`` minimises is the sum of the members' losses (each member's gradient is the
    one it gets alone), and the per-member losses and accuracies are logged as ``(K,)``
    vectors, training and held-out, then split into one history per member.

    ``rules``: the stack's rules as :func:`stack_rules` builds them (default), possibly with
    coefficient tensors the caller changes during training; ``callbacks``: added to ``fit``'s
    (they see the stack as ``state.model.stack``, its per-member logs as ``(K,)`` lists:
    ``val_member_acc``, ``val_member_loss``). Population Based Training uses both
    (:mod:`reglab.lab.work.population`).

    ``decide(epochs done, {member: its history row})`` (a stacked search's pruner) names
    members to stop after each epoch: the stack is compacted to the others
    (:mod:`reglab.lab.work.compaction`; the rules are rebuilt for them, so ``decide`` takes
    the default ``rules`` only), and a stopped member's outcome is that of its weights then,
    its history ending at that epoch, ``extra["stopped_at"]`` the epochs it trained."""
    if decide is not None and rules is not None:
        raise ValueError("run_stacked: decide compacts the stack with its default rules only")
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
    context = context or TrialContext()
    models = []
    for config, seed in members:
        torch.manual_seed(seed)
        models.append(config.network())
        load_init(config, seed, models[-1], context.device)  # [train] init, per member
    k = len(models)
    stack = ModelStack(models)
    rules = stack_rules(configs) if rules is None else rules
    reg = reglab.attach(stack, rules) if rules else None

    def attach(target: ModelStack, which: Sequence[int]) -> Any:  # after a compaction
        kept = stack_rules([configs[i] for i in which])
        return reglab.attach(target, kept) if kept else None

    model = Stoppable(stack)
    context = TrialContext(progress=context.progress, device=context.device)
    x, y = to_device((x, y), context.device)  # once, not per batch
    batches = _MemberBatches(x, y, seeds, first.train.batch_size)
    stopping = None if decide is None else MemberStopping(model, decide, attach, reg, batches)
    if stopping is not None:
        reg = stopping.penalties
    loss = _MemberLoss(criterion(first))
    transform, mix = _transform(first), _mixer(first)
    try:
        history, seconds = train_model(
            model,
            batches,
            monitor,
            first,
            seeds[0],
            context,
            regularizers=[reg] if reg is not None else [],
            callbacks=[*callbacks, *([stopping] if stopping is not None else [])],
            optimizer_maker=fused_optimizer,  # the stack mirrors its members' parameter names
            loss=loss,
            metrics={"member_loss": loss.logged, "member_acc": _member_accuracies},
            transform=None if transform is None else _Rows(transform),
            batch_transform=None if mix is None else _MemberMix(mix),
        )
    except Diverged as err:  # the Sweep trains each member alone, to say which diverged
        raise Diverged(f"{err} of a stack of {k}") from None
    if stopping is None:
        histories = dict(enumerate(_split(history.epochs, k)))
        nets = dict(enumerate(stack.unstack()))
    else:
        histories = stopping.histories
        final = model.stack.unstack() if stopping.live else []
        nets = {**stopping.stopped, **dict(zip(stopping.live, final, strict=True))}
    outcomes = []
    for m, (_, seed) in enumerate(members):
        net, rows = nets[m], histories[m]
        net.eval()
        metrics = classifier_metrics(net, train, val, test, seed)
        reliability = metrics.pop("reliability")
        metrics.update(epochs_run=float(len(rows)), stack_seconds=seconds, stack_size=float(k))
        extra: dict[str, Any] = {"stacked": k}
        if stopping is not None and m in stopping.stopped_at:
            extra["stopped_at"] = stopping.stopped_at[m]
        outcomes.append(TrialOutcome(metrics, rows, net, reliability, extra))
    return outcomes


def _split(epochs: Sequence[dict[str, Any]], k: int) -> list[list[dict[str, float]]]:
    """One history per member from the stack's per-epoch logs (``(K,)`` lists per member)."""
    return [[member_row(logs, i) for logs in epochs] for i in range(k)]
