"""Resolve ``attach`` rules (name patterns or module types -> regularizers) against a model."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reglab import constraints, penalties
from reglab._validation import InvalidParameterError, check_choice
from reglab.layouts import UnitLayout, is_bias, is_kernel, unit_layout

__all__ = ["ActivityBinding", "Bindings", "ConstraintBinding", "WeightBinding", "resolve"]

PENALTY_KINDS = ("kernel", "bias", "activity")
CONSTRAINT_KINDS = ("kernel_constraint", "bias_constraint")
REDUCTIONS = ("batch", "sum", "mean")
_RULE_KEYS = (*PENALTY_KINDS, *CONSTRAINT_KINDS, "activity_reduction")
RULE_KEYS = _RULE_KEYS  # what a rule may contain (the lab's study files ask here too)

RuleKey = str | type[nn.Module] | tuple[type[nn.Module], ...]


@dataclass(frozen=True)
class WeightBinding:
    """One parameter penalised by one penalty; ``term`` is its name in ``terms()``.

    The parameter is looked up on its module at each use (``module.<attr>``), so wrappers that
    replace parameters after ``attach`` (FSDP2's ``fully_shard``, ``load_state_dict(assign=True)``)
    are followed. ``layout`` says where the output units are, for per-unit penalties.
    """

    term: str
    param_name: str
    module: nn.Module
    attr: str
    penalty: Callable[[torch.Tensor], torch.Tensor]
    layout: UnitLayout
    rule: str = ""  # the rule that bound it, for messages

    @property
    def param(self) -> nn.Parameter:
        return self.module._parameters[self.attr]  # type: ignore[return-value]


@dataclass(frozen=True)
class ConstraintBinding:
    """One parameter projected by one constraint after each step (per output unit of
    ``layout`` for per-unit constraints with the default axis)."""

    param_name: str
    module: nn.Module
    attr: str
    constraint: Callable[[torch.Tensor], torch.Tensor]
    layout: UnitLayout

    @property
    def param(self) -> nn.Parameter:
        return self.module._parameters[self.attr]  # type: ignore[return-value]


@dataclass(frozen=True)
class ActivityBinding:
    """The output of one module penalised by one penalty, with its batch reduction."""

    term: str
    module_name: str
    module: nn.Module
    penalty: Callable[[torch.Tensor], torch.Tensor]
    reduction: str
    rule: str = ""  # the rule that bound it, for messages


@dataclass(frozen=True)
class Bindings:
    """Everything one ``attach`` call resolved, in model order."""

    weights: tuple[WeightBinding, ...]
    activities: tuple[ActivityBinding, ...]
    constraints: tuple[ConstraintBinding, ...]


def checked_value(binding: WeightBinding | ActivityBinding, value: Any) -> torch.Tensor:
    """A custom penalty's return value, which must be a 0-dim tensor (a scalar to add to the
    loss); anything else is an error naming the penalty, its rule and its term."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return value
    got = (
        f"a tensor of shape {tuple(value.shape)}"
        if isinstance(value, torch.Tensor)
        else f"{type(value).__name__} {value!r}"[:80]
    )
    name = getattr(binding.penalty, "__qualname__", type(binding.penalty).__name__)
    raise InvalidParameterError(
        f"The penalty {name} of rule {binding.rule} ({binding.term}) must return a 0-dim "
        f"tensor, e.g. w.abs().sum(). Got {got}."
    )


def _rule_name(key: RuleKey) -> str:
    if isinstance(key, str):
        return repr(key)
    if isinstance(key, tuple):
        return "(" + ", ".join(k.__name__ for k in key) + ")"
    return key.__name__


def _matcher(key: Any) -> Callable[[str, nn.Module], bool]:
    if isinstance(key, str) and key.startswith("re:"):  # a regex over the whole name
        try:
            pattern = re.compile(key[3:])
        except re.error as err:
            raise InvalidParameterError(
                f"The attach rule {key!r} is not a valid regular expression ({err})."
            ) from None
        return lambda name, _module: pattern.fullmatch(name) is not None
    if isinstance(key, str):  # fnmatch: ``*`` also crosses dots
        return lambda name, _module: fnmatch.fnmatchcase(name, key)
    is_type = isinstance(key, type) and issubclass(key, nn.Module)
    is_types = (
        isinstance(key, tuple)
        and key
        and all(isinstance(k, type) and issubclass(k, nn.Module) for k in key)
    )
    if is_type or is_types:
        return lambda _name, module: isinstance(module, key)
    raise InvalidParameterError(
        "Rule keys of attach must be a glob pattern over named_modules() (a str), an "
        f"nn.Module subclass, or a tuple of them. Got {key!r} instead."
    )


def _check_spec(key: RuleKey, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise InvalidParameterError(
            f"The rule for {_rule_name(key)} must be a dict of {', '.join(_RULE_KEYS)}. "
            f"Got {spec!r} instead."
        )
    unknown = sorted(set(spec) - set(_RULE_KEYS))
    if unknown:
        raise InvalidParameterError(
            f"The rule for {_rule_name(key)} has unknown key(s) {unknown}. "
            f"Allowed keys: {', '.join(_RULE_KEYS)}."
        )
    out: dict[str, Any] = {k: penalties.get(spec.get(k)) for k in PENALTY_KINDS}
    out.update({k: constraints.get(spec.get(k)) for k in CONSTRAINT_KINDS})
    reduction = spec.get("activity_reduction")
    if reduction is not None:
        check_choice(reduction, "activity_reduction", f"the rule {_rule_name(key)}", REDUCTIONS)
    out["activity_reduction"] = reduction
    return out


def _owned(module: nn.Module, kind: str) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters of ``module`` itself (not its children) of one kind: kernels or
    biases as ``reglab.layouts`` defines them. Frozen parameters are skipped, like Keras'
    non-trainable weights."""
    test = is_kernel if kind.startswith("kernel") else is_bias
    return [
        (name, p)
        for name, p in module.named_parameters(recurse=False)
        if test(name, p) and p.requires_grad
    ]


def resolve(
    model: nn.Module, rules: Mapping[RuleKey, Mapping[str, Any]], activity_reduction: str
) -> Bindings:
    """Match every rule against ``model.named_modules()`` and return what to regularize."""
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"The 'model' parameter of attach must be an nn.Module. Got {type(model).__name__}."
        )
    if not isinstance(rules, Mapping) or not rules:
        raise InvalidParameterError(
            f"The 'rules' parameter of attach must be a non-empty dict. Got {rules!r} instead."
        )
    check_choice(activity_reduction, "activity_reduction", "attach", REDUCTIONS)
    modules = list(model.named_modules())
    owner: dict[tuple[int, str], RuleKey] = {}  # (id of module or parameter, kind) -> rule
    weights: list[WeightBinding] = []
    activities: list[ActivityBinding] = []
    cons: list[ConstraintBinding] = []

    def claim(obj: object, kind: str, key: RuleKey, where: str) -> bool:
        """True the first time ``obj`` gets ``kind``; False when the same rule reaches it again
        (a tied parameter, or a module listed twice); an error when another rule had it."""
        previous = owner.setdefault((id(obj), kind), key)
        if previous is key:
            first = (id(obj), kind) not in reached
            reached.add((id(obj), kind))
            return first
        raise InvalidParameterError(
            f"Rules {_rule_name(previous)} and {_rule_name(key)} both give {where} a "
            f"{kind!r}; make the patterns disjoint or merge the rules."
        )

    reached: set[tuple[int, str]] = set()
    for key, raw in rules.items():
        match = _matcher(key)
        spec = _check_spec(key, raw)
        matched = [(name, m) for name, m in modules if match(name, m)]
        if not matched:
            names = ", ".join(repr(n) for n, _ in modules)
            raise InvalidParameterError(
                f"Rule {_rule_name(key)} matches no module of {type(model).__name__}. "
                f"Available module names: {names}."
            )
        for kind in (*PENALTY_KINDS[:2], *CONSTRAINT_KINDS):
            if spec[kind] is None:
                continue
            found = False
            for mname, module in matched:
                for pname, param in _owned(module, kind):
                    found = True
                    full = f"{mname}.{pname}" if mname else pname
                    if not claim(param, kind, key, f"parameter {full!r}"):
                        continue  # a tied parameter reached twice through the same rule
                    layout = unit_layout(module, pname)
                    if kind in PENALTY_KINDS:
                        term = f"{mname}.{kind}" if mname else kind
                        weights.append(
                            WeightBinding(
                                term, full, module, pname, spec[kind], layout, _rule_name(key)
                            )
                        )
                    else:
                        cons.append(ConstraintBinding(full, module, pname, spec[kind], layout))
            if not found:
                what = (
                    "weight parameters with ndim >= 2 (kernels)"
                    if "kernel" in kind
                    else "bias parameters"
                )
                names = ", ".join(repr(n) for n, _ in matched)
                raise InvalidParameterError(
                    f"Rule {_rule_name(key)} asks for {kind!r} but none of the modules it "
                    f"matches ({names}) has trainable {what}."
                )
        if spec["activity"] is not None:
            reduction = spec["activity_reduction"] or activity_reduction
            for mname, module in matched:
                if isinstance(module, torch.jit.ScriptModule):
                    raise InvalidParameterError(
                        f"Rule {_rule_name(key)} gives an activity penalty to module "
                        f"{mname or '<root>'!r}, a traced or scripted TorchScript module "
                        f"({type(module).__name__}): its compiled graph never calls the Python "
                        "hook that records the penalty, so it would silently be 0. Attach to "
                        "the plain nn.Module (eager or torch.compile) instead."
                    )
                if claim(module, "activity", key, f"module {mname!r}"):
                    term = f"{mname}.activity" if mname else "activity"
                    activities.append(
                        ActivityBinding(
                            term, mname, module, spec["activity"], reduction, _rule_name(key)
                        )
                    )
    return Bindings(tuple(weights), tuple(activities), tuple(cons))
