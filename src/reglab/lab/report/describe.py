"""A configuration's settings in words, for the report's first screen: pure functions.

A grid point's row in the report says what the point *is* — ``L2(l2=1e-3) on fc*`` — not only
its name, so a reader need not open ``study.toml``. The words come from the point's concrete
settings (:attr:`reglab.lab.settings.config.TrialConfig.raw`: study tables merged with the
grid entry, sweep axes replaced by values) compared with the study-level tables::

    >>> raw = {"model": {"sizes": [64, 10]}, "train": {"lr": 1e-3},
    ...        "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 1e-3}}}}}
    >>> describe_point(raw, {"model": {"sizes": [64, 10]}, "train": {"lr": 1e-3}})
    'L2(l2=1e-3) on fc*'
    >>> describe_point({"train": {"lr": 1e-2}}, {"train": {"lr": 1e-3}})
    'train.lr=0.01'
    >>> describe_point({}, {})
    'no regularization'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe_point", "format_number", "format_spec"]

#: How a rule's slot reads after ``on <glob>`` (a kernel penalty reads as the bare glob).
_SLOTS = {
    "kernel": "",
    "bias": " biases",
    "activity": " outputs (activity)",
    "kernel_constraint": " (constraint)",
    "bias_constraint": " biases (constraint)",
}
_SECTIONS = ("data", "model", "train")


def format_number(value: Any) -> str:
    """A number as written in a study file: ``1e-3``, ``0.5``, ``3``, ``2.5e+04`` → ``25000``.

    >>> ", ".join(format_number(v) for v in (0.001, 1e-5, 0.5, 3, 25000.0, True))
    '1e-3, 1e-5, 0.5, 3, 25000, True'
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 1e-2:
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k}={_value(v)}" for k, v in value.items()) + ")"
    if isinstance(value, str):
        return value
    return format_number(value)


def format_spec(spec: Any) -> str:
    """A penalty or constraint identifier as a call: ``"l2"`` → ``l2``,
    ``{class_name = "L2", config = {l2 = 1e-3}}`` → ``L2(l2=1e-3)``."""
    if isinstance(spec, Mapping) and "class_name" in spec:
        config = spec.get("config") or {}
        args = ", ".join(f"{k}={_value(v)}" for k, v in config.items())
        return f"{spec['class_name']}({args})"
    return _value(spec)


def _rules(rules: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = []
    for glob, rule in rules.items():
        reduction = rule.get("activity_reduction")
        for slot, spec in rule.items():
            if slot == "activity_reduction":
                continue
            where = _SLOTS.get(slot, f" {slot}")
            if slot == "activity" and reduction is not None:
                where = f" outputs (activity, {reduction})"
            out.append(f"{format_spec(spec)} on {glob}{where}")
    return out


def _changed(section: str, own: Any, base: Any) -> list[str]:
    """``section.key=value`` for every value of the point that differs from the study's."""
    if not isinstance(own, Mapping):
        return [] if own == base else [f"{section}={_value(own)}"]
    base = base if isinstance(base, Mapping) else {}
    return [f"{section}.{k}={_value(v)}" for k, v in own.items() if base.get(k) != v]


def describe_point(raw: Mapping[str, Any], base: Mapping[str, Mapping[str, Any]]) -> str:
    """The settings of one point in words: its rules (``L1(l1=1e-4) on fc*``), techniques
    (``label_smoothing(eps=0.1)``, ``input_noise=0.1``) and the ``[data]`` / ``[model]`` /
    ``[train]`` values that differ from the study-level ``base`` tables; ``"no
    regularization"`` when there is nothing of the sort."""
    parts = _rules(raw.get("rules") or {})
    for key, value in raw.items():
        if key in ("rules", *_SECTIONS):
            continue
        if isinstance(value, Mapping):
            parts.append(f"{key}{_value(value)}")
        elif isinstance(value, list) or value not in (0, 0.0, None, False):
            parts.append(f"{key}={_value(value)}")
    for section in _SECTIONS:
        if section in raw:
            parts += _changed(section, raw[section], base.get(section, {}))
    return ", ".join(parts) or "no regularization"
