"""``attach``: Keras' kernel/bias/activity regularizers and constraints for any nn.Module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from reglab.regularization.handle import Regularization
from reglab.regularization.rules import RuleKey, resolve
from reglab.regularization.tracking import Structure, resolver, warn_overlaps

__all__ = ["attach"]


def attach(
    model: nn.Module,
    rules: Mapping[RuleKey, Mapping[str, Any]],
    *,
    activity_reduction: str = "batch",
    max_pending: int | None = None,
) -> Regularization:
    """Attach penalties and constraints to an existing model without editing it.

    Args:
        model: any ``nn.Module``.
        rules: maps a **glob pattern** over ``model.named_modules()`` names (``"encoder.*"``,
            ``"fc2"``; ``fnmatch`` syntax, ``*`` also crosses dots; a ``"re:"`` prefix makes it
            a regular expression that must match the whole name, ``[^.]+`` one segment:
            ``"re:encoder\\.layer\\.[^.]+\\.output\\.dense"``), an **nn.Module subclass**
            (``nn.Conv2d``) or a tuple of them, to a dict with any of:

            * ``kernel``: penalty on the module's own trainable ``weight*`` parameters with
              ndim >= 2 (Linear/Conv weights; ``nn.LSTM``'s ``weight_ih_l0``, ``weight_hh_l0``..).
            * ``bias``: penalty on its ``bias*`` parameters. Biases are never penalised unless
              asked.
            * ``activity``: penalty on the module's **output** (after whatever the module
              computes; for tuple outputs such as ``nn.LSTM``'s, the first element). Attach to
              the activation module (``nn.ReLU``) to regularize post-activation codes.
            * ``kernel_constraint`` / ``bias_constraint``: projections applied by
              ``Regularization.apply_constraints`` (or after each step once ``bind``-ed).
            * ``activity_reduction``: overrides the call's ``activity_reduction`` for this rule.

            Penalties and constraints are objects, registry names (``"l2"``, ``"max_norm"``),
            config dicts, or any callable. Frozen parameters are skipped: those frozen at
            ``attach`` are never bound; those frozen later are left out while frozen.
        activity_reduction: how an activity penalty's value is normalised per recorded call:
            ``"batch"`` (Keras: divided by ``output.shape[0]``, the batch size of batch-first
            outputs), ``"sum"`` (as is) or ``"mean"`` (divided by ``output.numel()``, AWD-LSTM's
            ``alpha * h.pow(2).mean()`` with ``L2(alpha)``). Penalties that are already batch
            means (``KLSparsity``, ``TemporalDifference``) are never divided.
        max_pending: how many recorded outputs may wait for ``Regularization.penalty``
            (a fused record keeps no graph; a token, under ``torch.compile`` or for custom
            callables, keeps its forward's graph alive); beyond it the oldest are dropped with
            a warning. Default: the outputs of 8 forwards, at least 64.

    Returns:
        A ``Regularization`` handle: add ``reg.penalty()`` to the loss each step; log
        ``reg.terms()``; call ``reg.apply_constraints()`` after ``optimizer.step()`` or
        ``reg.bind(optimizer)`` once; ``reg.remove()`` (or ``with``) detaches everything.

    Raises:
        InvalidParameterError: an activity rule reaches a traced or scripted (TorchScript)
            module, a rule matches no module (the message lists the module names),
            two rules give one module or parameter the same kind (both rules are named), a rule
            asks for a kind none of its modules has, or a penalty/constraint is not understood.

    >>> import torch
    >>> from torch import nn
    >>> from reglab.penalties import L1, L2
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> reg = attach(model, {nn.Linear: dict(kernel=L2(1e-4)), "1": dict(activity=L1(1e-3))})
    >>> loss = model(torch.randn(16, 4)).pow(2).mean() + reg.penalty()
    >>> sorted(reg.terms())
    ['0.kernel', '1.activity', '2.kernel']
    >>> reg.remove()
    """
    bindings = resolve(model, rules, activity_reduction)
    structure = Structure(model, bindings, resolver(model, rules, activity_reduction))
    reg = Regularization(model, bindings, max_pending, structure)
    warn_overlaps(reg)
    return reg
