"""The chosen configuration as text the user pastes: a ``reglab.attach(...)`` call and a
study-file ``[[grid]]`` entry.

Both are pure functions of settings: :func:`attach_call` of an entry's ``rules`` table (what
``reglab.attach`` takes; other study-file tables — dropout, schedules, training — are not
``attach`` arguments and appear only in the fragment), :func:`study_fragment` of the whole
concrete entry (:func:`~reglab.lab.search.axes.concrete`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from reglab import constraints, penalties

__all__ = ["attach_call", "study_fragment", "toml_value"]

_PENALTY_KEYS = ("kernel", "bias", "activity")
_CONSTRAINT_KEYS = ("kernel_constraint", "bias_constraint")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _object(module: str, family: Any, identifier: Any) -> str:
    """``penalties.L2(l2=0.0003)`` for a registry name or config dict."""
    obj = family.get(identifier)
    if not isinstance(identifier, (str, Mapping)):
        raise ValueError(f"cannot write {identifier!r} as Python: not a name or config table")
    config = obj.get_config()
    args = ", ".join(f"{k}={v!r}" for k, v in config.items())
    return f"{module}.{type(obj).__name__}({args})"


def attach_call(rules: Mapping[str, Mapping[str, Any]], model: str = "model") -> str:
    """Python that attaches ``rules`` (a study entry's ``rules`` table) to ``model``.

    >>> print(attach_call({"fc*": {"kernel": {"class_name": "L2", "config": {"l2": 3e-4}}}}))
    import reglab
    from reglab import constraints, penalties
    <BLANKLINE>
    regularization = reglab.attach(model, {
        'fc*': {'kernel': penalties.L2(l2=0.0003)},
    })
    """
    lines = [
        "import reglab",
        "from reglab import constraints, penalties",
        "",
        f"regularization = reglab.attach({model}, {{",
    ]
    for pattern, rule in rules.items():
        parts = []
        for key, value in rule.items():
            if key in _PENALTY_KEYS:
                text = _object("penalties", penalties, value)
            elif key in _CONSTRAINT_KEYS:
                text = _object("constraints", constraints, value)
            else:  # activity_reduction and other plain values
                text = repr(value)
            parts.append(f"{key!r}: {text}")
        lines.append(f"    {pattern!r}: {{{', '.join(parts)}}},")
    lines.append("})")
    return "\n".join(lines)


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML study files take finite numbers. Got {value!r}.")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise ValueError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def _lines(value: Mapping[str, Any], prefix: str) -> list[str]:
    out = []
    for k, v in value.items():
        key = f"{prefix}{_key(str(k))}"
        if isinstance(v, Mapping) and v and "class_name" not in v:
            out.extend(_lines(v, key + "."))
        else:
            out.append(f"{key} = {toml_value(v)}")
    return out


def study_fragment(entry: Mapping[str, Any], name: str | None = None) -> str:
    """A ``[[grid]]`` entry holding ``entry`` (nested tables as dotted keys, a penalty's
    ``{class_name, config}`` inline), named ``name`` (else the entry's own ``name``).

    >>> print(study_fragment({"rules": {"fc*": {"kernel": {"class_name": "L2",
    ...     "config": {"l2": 0.0003}}}}}, name="best"))
    [[grid]]
    name = "best"
    rules."fc*".kernel = { class_name = "L2", config = { l2 = 0.0003 } }
    """
    body = {k: v for k, v in entry.items() if k != "name"}
    title = name if name is not None else entry.get("name")
    head = ["[[grid]]"] + ([f"name = {toml_value(title)}"] if title is not None else [])
    return "\n".join(head + _lines(body, ""))
