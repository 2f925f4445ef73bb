"""Layer-wise learning-rate decay (BEiT, Bao et al. 2022; ELECTRA, Clark et al. 2020): the
layer ids behind ``param_groups(..., layer_decay=)``, and the helper that applies ``lr_scale``.

Fine-tuning a pretrained transformer, the head learns at the full rate and each layer below it
at ``layer_decay`` times the rate of the layer above: with ``L`` the largest layer id,
``lr_scale(layer) = max(min_scale, layer_decay ** (L - layer))``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from reglab._validation import InvalidParameterError, invalid

__all__ = ["apply_lr_scale", "layer_ids", "layer_scales"]

#: timm's ``MATCH_PREV_GROUP``: a matcher suffix that puts a name in the group before it.
MATCH_PREV_GROUP = 99999
LayerId = Callable[[str], int] | Mapping[str, Any]


def _block_container(model: nn.Module, names: set[str]) -> tuple[str, list[str]] | None:
    """The ``nn.ModuleList`` / ``nn.Sequential`` with the most children owning trainable
    parameters (at least 2; the outermost on a tie): the stack of blocks."""
    best: tuple[str, list[str]] | None = None
    for prefix, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        dot = f"{prefix}." if prefix else ""
        children = [
            child
            for child, _ in module.named_children()
            if any(n.startswith(f"{dot}{child}.") for n in names)
        ]
        if len(children) >= 2 and (best is None or len(children) > len(best[1])):
            best = (prefix, children)
    return best


def _default_keys(model: nn.Module, names: list[str]) -> dict[str, tuple[float, ...]]:
    """BEiT's rule from the module path: everything registered before the blocks (patch and
    position embeddings, ``cls_token``, ``reg_token``, word embeddings) -> stem, block ``i``
    -> ``i``, everything after them (final norm, pooler, head) -> head."""
    found = _block_container(model, set(names))
    if found is None:
        return {n: (0.0,) for n in names}
    prefix, children = found
    dot = f"{prefix}." if prefix else ""
    position = {child: i for i, child in enumerate(children)}
    keys: dict[str, tuple[float, ...]] = {}
    seen_block = False
    for name in names:
        child = name[len(dot) :].split(".", 1)[0] if name.startswith(dot) else None
        if child in position:
            keys[name], seen_block = (1.0, float(position[child])), True
        else:
            keys[name] = (2.0,) if seen_block else (0.0,)
    return keys


def _matcher_keys(
    names: list[str], matcher: Mapping[str, Any] | Callable[[str], Any]
) -> dict[str, tuple[float, ...]]:
    """timm's ``group_matcher`` format: ``{group: regex or [(regex, suffix tuple or None),
    ...]}``, matched in order with ``re.match``; the captured integers follow the group's
    ordinal, and unmatched names (neck, head) get the largest key. Or a callable returning an
    ordinal (an int or a tuple of ints)."""
    if callable(matcher) and not isinstance(matcher, Mapping):

        def key(name: str) -> tuple[float, ...]:
            value = matcher(name)
            return tuple(map(float, value)) if isinstance(value, Iterable) else (float(value),)

        return {n: key(n) for n in names}
    specs: list[tuple[re.Pattern[str], float, tuple[Any, ...]]] = []
    for ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        entries = spec if isinstance(spec, (list, tuple)) else [(spec, None)]
        specs += [(re.compile(rx), float(ordinal), tuple(suffix or ())) for rx, suffix in entries]
    keys = {}
    for name in names:
        for pattern, ordinal, suffix in specs:
            found = pattern.match(name)
            if found:
                groups = (g for g in found.groups() if g is not None)
                keys[name] = (ordinal, *map(float, groups), *map(float, suffix))
                break
        else:
            keys[name] = (math.inf,)
    return keys


def layer_ids(model: nn.Module, layer_id: LayerId | None = None) -> dict[str, int]:
    """The layer id of each trainable parameter of ``model`` (by ``named_parameters()`` name).

    * ``layer_id=None``: ``model.group_matcher(coarse=False)`` when the model has one (timm's
      models), else BEiT's rule from the module path: the largest ``nn.ModuleList`` /
      ``nn.Sequential`` of blocks is found (``blocks``, ``encoder.layer``, ``transformer.h``,
      ``layers``); parameters registered before the first block (embeddings, ``cls_token``,
      ``reg_token``, ``pos_embed``) get id 0, block ``i`` id ``i + 1``, and those after the
      blocks (final norm, pooler, head) the last id.
    * ``layer_id`` a timm-style matcher dict (``{"stem": r"^embed", "blocks":
      r"^blocks\\.(\\d+)"}``) or a callable ``name -> ordinal``: ordinals are sorted and
      numbered 0, 1, ... as timm's ``group_parameters`` does (a suffix ``(99999,)`` joins the
      group before it; unmatched names go last).

    Only trainable parameters count (timm counts frozen ones too, which shifts every scale
    when a frozen module sorts last: timm issue #2691).

    >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 1))
    >>> layer_ids(model)
    {'0.weight': 0, '0.bias': 0, '2.weight': 1, '2.bias': 1, '3.weight': 2, '3.bias': 2}
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if layer_id is None and callable(getattr(model, "group_matcher", None)):
        layer_id = model.group_matcher(coarse=False)
    if layer_id is None:
        keys = _default_keys(model, names)
    elif isinstance(layer_id, Mapping) or callable(layer_id):
        keys = _matcher_keys(names, layer_id)
    else:
        raise invalid(
            "layer_id", "param_groups", "None, a timm-style matcher dict or a callable", layer_id
        )
    ids: dict[tuple[float, ...], int] = {}
    current = -1
    for key in sorted(set(keys.values())):
        if current < 0 or key[-1] != MATCH_PREV_GROUP:
            current += 1
        ids[key] = current
    return {n: ids[keys[n]] for n in names}


def layer_scales(ids: Mapping[str, int], layer_decay: float, min_scale: float = 0.0) -> dict:
    """``{name: max(min_scale, layer_decay ** (L - id))}`` with ``L = max(ids)``: 1.0 for the
    last layer (the head), ``layer_decay ** k`` k layers below it."""
    top = max(ids.values(), default=0)
    return {n: max(min_scale, layer_decay ** (top - i)) for n, i in ids.items()}


def apply_lr_scale(optimizer: torch.optim.Optimizer, lr: float | None = None) -> None:
    """Multiply each parameter group's learning rate by its ``lr_scale``, once.

    torch's optimizers and LR schedulers ignore ``lr_scale`` (timm's schedulers apply it; with
    plain torch it silently does nothing — timm PR #2532). Call this after building the
    optimizer and *before* building an LR scheduler: the scheduler then records the scaled
    rates as ``initial_lr`` and, being multiplicative (``LambdaLR``, ``StepLR``,
    ``CosineAnnealingLR`` with ``eta_min=0``, ``LinearLR``, ...), keeps the ratios. Each group's
    unscaled rate is kept in ``group["unscaled_lr"]``, so calling it again changes nothing;
    ``lr`` replaces that unscaled rate. Do not use it with timm's schedulers, which would scale
    twice. ``param_groups(..., layer_decay=, lr=)`` does the same at construction.

    >>> w = nn.Parameter(torch.zeros(2))
    >>> optimizer = torch.optim.SGD([{"params": [w], "lr_scale": 0.5}], lr=0.1)
    >>> apply_lr_scale(optimizer)
    >>> apply_lr_scale(optimizer)
    >>> (group,) = optimizer.param_groups
    >>> group["lr"]
    0.05
    """
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr < 0):
        raise invalid("lr", "apply_lr_scale", "None or a number >= 0", lr)
    for group in optimizer.param_groups:
        if "lr_scale" not in group:
            continue
        if isinstance(group["lr"], torch.Tensor):
            raise InvalidParameterError(
                "apply_lr_scale needs float learning rates; this group's lr is a tensor."
            )
        unscaled = group.setdefault("unscaled_lr", group["lr"])
        if lr is not None:
            unscaled = group["unscaled_lr"] = float(lr)
        group["lr"] = unscaled * group["lr_scale"]
