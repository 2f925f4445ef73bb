"""Parameter groups for an optimizer's weight decay: decay the kernels, not the rest.

What every training codebase writes again: nanoGPT decays ``dim() >= 2``; timm's
``param_groups_weight_decay`` skips ``ndim <= 1``, names ending in ``.bias`` and a model's
``no_weight_decay()``; Hugging Face's ``Trainer`` excludes normalization layers by type and,
since custom RMSNorm classes escaped the type list, by name. :func:`param_groups` does all of
these in one place, and :func:`classify` says why each parameter landed where it did.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reglab._validation import InvalidParameterError, check_coefficient, invalid
from reglab.optim.layer_decay import LayerId, layer_ids, layer_scales

__all__ = ["Decision", "classify", "param_groups"]

#: torch's normalization layers (matched by type; subclasses included).
NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
    )
    if t is not None
)
#: Third-party normalization classes by name: ``LlamaRMSNorm``, ``T5LayerNorm``,
#: ``LayerNorm2d``, ``BertLayerNorm``, ``ScaleNorm``, ...
_NORM_CLASS = re.compile(r"norm", re.IGNORECASE)
#: Normalization layers by the attribute name they are stored under (the module's own name,
#: the last segment of its path): ``ln_f``, ``ln_1``, ``ln_pre``, ``layernorm``,
#: ``layer_norm``, ``final_norm``, ``norm1``, ``rms_norm``, ... — not ``ln_proj``.
_NORM_NAME = re.compile(r"^(ln(_?(\d+|f|final|pre|post))?|\w*norm\w*)$", re.IGNORECASE)
_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)
#: Modules whose parameters are kernels whatever their class or attribute name says: a
#: ``NormedLinear(nn.Linear)`` cosine classifier or a ``Linear`` stored as ``ln_proj`` or
#: ``norm1.linear`` (adaptive layer norm) is decayed, as timm decays it.
_KERNEL_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.MultiheadAttention,
    nn.RNNBase,
    *_EMBEDDING_TYPES,
)


@dataclass(frozen=True)
class Decision:
    """Where one parameter goes: ``decay`` or not, and why (one short phrase)."""

    name: str
    param: torch.Tensor
    decay: bool
    reason: str

    def __str__(self) -> str:
        return f"{'decay' if self.decay else 'no decay':<9} {self.name}  ({self.reason})"


def _listed(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """timm's convention: ``model.no_weight_decay()`` (``fnmatch`` patterns, as timm's
    ``param_groups_weight_decay`` matches them: ``blocks.*.attn.qkv.weight``) and
    ``model.no_weight_decay_keywords()`` (substrings)."""
    names = tuple(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else ()
    keywords = (
        tuple(model.no_weight_decay_keywords())
        if hasattr(model, "no_weight_decay_keywords")
        else ()
    )
    return names, keywords


def _norm_reason(module: nn.Module, module_name: str) -> str | None:
    if isinstance(module, NORM_TYPES):
        return f"in a normalization layer ({type(module).__name__})"
    if isinstance(module, _KERNEL_TYPES):  # a Linear named like a norm is still a Linear
        return None
    if _NORM_CLASS.search(type(module).__name__):
        return f"in a normalization layer (class {type(module).__name__})"
    own_name = module_name.rsplit(".", 1)[-1]  # a parent's name says nothing about this module
    if _NORM_NAME.match(own_name):
        return f"in a normalization layer (named {own_name!r})"
    return None


def classify(
    model: nn.Module,
    *,
    decay_embeddings: bool = True,
    no_decay: Iterable[str] = (),
) -> list[Decision]:
    """One :class:`Decision` per trainable parameter of ``model`` (each once, tied ones under
    their first name), in ``named_parameters()`` order.

    No decay, in this order of reasons: names matching a ``model.no_weight_decay()`` entry
    (an ``fnmatch`` pattern, as in timm: ``"blocks.*.qkv.weight"``; a plain name matches only
    itself) or containing a ``model.no_weight_decay_keywords()`` or ``no_decay`` entry
    (substrings); parameters owned directly by a normalization layer — torch's (BatchNorm,
    LayerNorm, GroupNorm, RMSNorm, ... by type), third-party ones by class name
    (``LlamaRMSNorm``, ``T5LayerNorm``) or by the module's own name (``ln_f``, ``final_norm``,
    ``layer_norm``; a parent's name does not count, so ``norm1.linear`` is a kernel); biases
    (attribute ``bias``, as timm's ``.bias``); any other tensor with fewer than 2 dimensions
    (gains, scales); embeddings (``nn.Embedding``, ``nn.EmbeddingBag``) when
    ``decay_embeddings=False``. Everything else — the kernels — is decayed. Frozen parameters
    (``requires_grad=False``) are left out.

    Same as timm's ``param_groups_weight_decay`` (no decay for ``ndim <= 1``, ``.bias`` and
    ``no_weight_decay()`` patterns) except in one place: a >= 2-D parameter owned directly by
    a module that is not a ``Linear``/conv/embedding/attention/RNN and whose class or own
    name says "norm" (a ``(1, d)`` gain of a custom norm) is not decayed; timm decays it.

    Raises ``InvalidParameterError`` for FSDP1's flattened parameters (``_flat_param``),
    which mix kernels and biases in one tensor: build the groups before wrapping, or use
    ``use_orig_params=True`` / FSDP2.
    """
    listed, keywords = _listed(model)
    keywords = (*keywords, *no_decay)
    decisions: list[Decision] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for attr, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            name = f"{module_name}.{attr}" if module_name else attr
            if "_flat_param" in name:
                raise InvalidParameterError(
                    f"{name} is a flattened FSDP parameter: it mixes kernels, biases and "
                    "normalization gains in one tensor, so no decay rule can tell them apart. "
                    "Build the parameter groups before wrapping the model, or wrap with "
                    "use_orig_params=True (or FSDP2's fully_shard)."
                )
            decisions.append(Decision(name, param, *_decide(name, attr, param, module,
                                                            module_name, listed, keywords,
                                                            decay_embeddings)))  # fmt: skip
    return decisions


def _decide(
    name: str,
    attr: str,
    param: torch.Tensor,
    module: nn.Module,
    module_name: str,
    listed: tuple[str, ...],
    keywords: tuple[str, ...],
    decay_embeddings: bool,
) -> tuple[bool, str]:
    pattern = next((p for p in listed if fnmatch.fnmatchcase(name, p)), None)
    if pattern is not None:
        if pattern == name:
            return False, "listed by model.no_weight_decay()"
        return False, f"matches {pattern!r} of model.no_weight_decay()"
    matched = next((k for k in keywords if k in name), None)
    if matched is not None:
        return False, f"name contains {matched!r}"
    norm = _norm_reason(module, module_name)
    if norm is not None:
        return False, norm
    if attr == "bias":  # timm: name.endswith(".bias"); a 2-D ``rel_pos_bias`` table decays
        return False, "a bias"
    if param.ndim < 2:
        return False, f"{param.ndim}-D (a gain, scale or bias)"
    if isinstance(module, _EMBEDDING_TYPES):
        if not decay_embeddings:
            return False, "an embedding (decay_embeddings=False)"
        return True, "an embedding table"
    return True, f"a kernel ({param.ndim}-D)"


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    decay_embeddings: bool = True,
    no_decay: Iterable[str] = (),
    verbose: bool = False,
    layer_decay: float | None = None,
    layer_id: LayerId | None = None,
    min_scale: float = 0.0,
    **group_options: Any,
) -> list[dict[str, Any]]:
    """Parameter groups for any ``torch.optim`` optimizer: ``[{"params": kernels,
    "weight_decay": weight_decay}, {"params": the rest, "weight_decay": 0.0}]``.

    **Layer-wise learning-rate decay** (``layer_decay`` in (0, 1], BEiT / timm's
    ``param_groups_layer_decay``): one group per layer and decay decision, in order of first
    appearance, each with ``"lr_scale": max(min_scale, layer_decay ** (L - layer))`` — 1.0 for
    the head (the last id ``L``), ``layer_decay ** k`` k layers below it. Layer ids come from
    :func:`reglab.optim.layer_ids` (embeddings 0, block ``i`` → ``i + 1``, final norm and head
    last; ``model.group_matcher()`` when the model has one; ``layer_id=`` overrides: a
    timm-style matcher dict or a callable ``name -> ordinal``). torch ignores ``lr_scale``:
    pass ``lr=`` here and each group's ``lr`` is ``lr * lr_scale`` (torch's multiplicative
    LR schedulers keep the ratios), or call :func:`reglab.optim.apply_lr_scale` on the
    optimizer; timm's schedulers apply ``lr_scale`` themselves (then do neither).

    Which parameter goes where is :func:`classify`'s decision (``decay_embeddings`` and
    ``no_decay`` are passed on); ``verbose=True`` prints one line per parameter with its
    reason. Other keyword arguments (``lr=``, ...) are copied into both groups. An empty group
    is left out.

    What ``weight_decay`` means is the optimizer's: ``SGD(weight_decay=wd)`` adds ``wd · w``
    to the gradient, which equals a Keras ``L2(wd / 2)`` penalty on the loss; ``Adam``'s is
    the same coupled form, rescaled per coordinate by the adaptive step; ``AdamW``'s is
    decoupled, ``w ← w − lr · wd · w`` (see the *weight decay* guide).

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    >>> groups = param_groups(model, 0.01)
    >>> [len(g["params"]) for g in groups], [g["weight_decay"] for g in groups]
    ([2, 4], [0.01, 0.0])
    >>> optimizer = torch.optim.AdamW(groups, lr=1e-3)
    >>> deep = nn.Sequential(*(nn.Linear(4, 4) for _ in range(3)))
    >>> layered = param_groups(deep, 0.01, layer_decay=0.5, lr=1.0)
    >>> print(*(f"{g['lr_scale']}:{g['lr']}" for g in layered))
    0.25:0.25 0.25:0.25 0.5:0.5 0.5:0.5 1.0:1.0 1.0:1.0
    """
    weight_decay = check_coefficient(weight_decay, "weight_decay", "param_groups")
    decisions = classify(model, decay_embeddings=decay_embeddings, no_decay=no_decay)
    if verbose:
        for decision in decisions:
            print(decision)
    if layer_decay is not None:
        return _layer_groups(
            model, decisions, weight_decay, layer_decay, layer_id, min_scale, group_options
        )
    if layer_id is not None:
        raise invalid("layer_id", "param_groups", "None unless layer_decay is set", layer_id)
    groups = [
        {
            "params": [d.param for d in decisions if d.decay],
            "weight_decay": weight_decay,
            **group_options,
        },
        {
            "params": [d.param for d in decisions if not d.decay],
            "weight_decay": 0.0,
            **group_options,
        },
    ]
    return [g for g in groups if g["params"]]


def _layer_groups(
    model: nn.Module,
    decisions: list[Decision],
    weight_decay: float,
    layer_decay: float,
    layer_id: LayerId | None,
    min_scale: float,
    group_options: dict[str, Any],
) -> list[dict[str, Any]]:
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)):
        raise invalid("layer_decay", "param_groups", "None or a float in (0, 1]", layer_decay)
    if not 0 < layer_decay <= 1:
        raise invalid("layer_decay", "param_groups", "None or a float in (0, 1]", layer_decay)
    min_scale = check_coefficient(min_scale, "min_scale", "param_groups")
    ids = layer_ids(model, layer_id)
    scales = layer_scales(ids, float(layer_decay), min_scale)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for d in decisions:
        key = (ids[d.name], d.decay)
        if key not in groups:
            group = {
                "params": [],
                "weight_decay": weight_decay if d.decay else 0.0,
                "lr_scale": scales[d.name],
                **group_options,
            }
            if "lr" in group_options:
                group["lr"] = group_options["lr"] * scales[d.name]
            groups[key] = group
        groups[key]["params"].append(d.param)
    return list(groups.values())
