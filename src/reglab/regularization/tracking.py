"""The model's structure as ``attach`` resolved it, checked cheaply at every step.

A ``Regularization`` is bound to module *objects*. If the model is changed afterwards — a
module replaced (``model[2] = nn.Linear(8, 3)``), removed (``del model.head``), or a module
added that a rule would match — the handle would go on penalising the old modules and leave
the new ones unregularized. ``Structure.check`` (run by ``penalty()``, ``apply_constraints``
and a folded optimizer's step) raises instead, naming what changed. reglab does not re-resolve
the rules by itself: the optimizer (and a ``fold_into``) would not step the new module's
parameters either, so the user re-attaches once the model and the optimizer are rebuilt.

Two checks keep the per-step cost independent of the model's size where possible:

* **Links** (every check): each bound module is still where ``attach`` found it — one dict
  lookup per edge of the paths from the root to the bound modules.
* **Registrations** (only when something changed): torch calls a global module registration
  hook whenever a module is assigned as a submodule anywhere (``setattr``, ``add_module``,
  ``Sequential.__setitem__``); the hook bumps a counter, and only when the counter moved are
  the rules resolved again and compared with the bindings (this finds added modules).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from reglab._validation import InvalidParameterError
from reglab.regularization.rules import Bindings, RuleKey

__all__ = ["ModelChangedError", "Structure", "resolver", "warn_overlaps"]

#: Bumped (by torch's hook) whenever any module anywhere is registered as a submodule.
_version = 0


def _on_registration(module: nn.Module, name: str, submodule: Any) -> None:
    global _version
    del module, name, submodule
    _version += 1


torch.nn.modules.module.register_module_module_registration_hook(_on_registration)


class ModelChangedError(InvalidParameterError, RuntimeError):
    """The model's modules changed after ``attach``: the handle no longer matches it."""


def _fingerprint(bindings: Bindings) -> dict[tuple[str, str], int]:
    """(place, kind) -> id of the bound module, for comparing two resolutions."""
    out: dict[tuple[str, str], int] = {}
    for w in bindings.weights:
        out[(w.param_name, "penalty")] = id(w.module)
    for c in bindings.constraints:
        out[(c.param_name, "constraint")] = id(c.module)
    for a in bindings.activities:
        out[(a.module_name or "<root>", "activity")] = id(a.module)
    return out


class Structure:
    """What ``attach`` bound, and where, for :meth:`check`."""

    def __init__(
        self,
        model: nn.Module,
        bindings: Bindings,
        resolve: Callable[[], Bindings],
    ) -> None:
        self._resolve = resolve
        self._fingerprint = _fingerprint(bindings)
        names = {id(m): n for n, m in model.named_modules()}
        bound = {id(b.module): b.module for b in (*bindings.weights, *bindings.activities)}
        bound.update({id(c.module): c.module for c in bindings.constraints})
        # Every edge (parent's _modules dict, key, child) on the paths to the bound modules.
        edges: dict[tuple[int, str], tuple[dict[str, Any], str, nn.Module, str]] = {}
        by_name = dict(model.named_modules())
        for module in bound.values():
            name = names.get(id(module))
            if not name:  # the root itself, or not reachable by name
                continue
            parts = name.split(".")
            for depth in range(len(parts)):
                parent = by_name[".".join(parts[:depth])]
                child_name = ".".join(parts[: depth + 1])
                edges[(id(parent), parts[depth])] = (
                    parent._modules,
                    parts[depth],
                    by_name[child_name],
                    child_name,
                )
        self._edges = list(edges.values())
        self._version = _version

    def check(self) -> None:
        """Raise ``ModelChangedError`` if the model's modules changed since ``attach``."""
        for modules, key, child, name in self._edges:
            # TorchScript's module dict has no get()
            now = modules[key] if key in modules else None  # noqa: SIM401
            if now is not child:
                what = "removed" if now is None else f"replaced by a new {type(now).__name__}"
                self._raise(f"module {name!r} ({type(child).__name__}) was {what}")
        if self._version != _version:
            version = _version
            self._compare()
            self._version = version  # only once the model matched: a caught error recurs

    def _compare(self) -> None:
        try:
            now = _fingerprint(self._resolve())
        except InvalidParameterError as error:
            self._raise(f"its rules no longer resolve ({error})")
        if now != self._fingerprint:
            changed = sorted(
                {place for place, _ in now.keys() ^ self._fingerprint.keys()}
                | {p for (p, k), i in now.items() if self._fingerprint.get((p, k), i) != i}
            )
            self._raise(f"the rules now reach other modules at {', '.join(changed[:5])}")

    @staticmethod
    def _raise(what: str) -> None:
        raise ModelChangedError(
            f"reglab: the model changed after attach: {what}. The handle would keep "
            "regularizing the modules it was attached to and leave new ones unregularized. "
            "Call reg.remove() and attach again (and give new parameters to the optimizer)."
        )


def resolver(
    model: nn.Module, rules: Mapping[RuleKey, Mapping[str, Any]], activity_reduction: str
) -> Callable[[], Bindings]:
    """A function that resolves ``rules`` against ``model`` again (for :class:`Structure`)."""
    from reglab.regularization.rules import resolve

    rules = dict(rules)  # as given to attach, whatever the caller does with its dict later
    return lambda: resolve(model, rules, activity_reduction)


#: Every ``Regularization`` made by ``attach`` (weakly held), for :func:`warn_overlaps`.
_HANDLES: weakref.WeakSet[Any] = weakref.WeakSet()


def warn_overlaps(reg: Any) -> None:
    """Warn, naming the parameters, when a new handle penalises parameters that another live
    (not removed) handle already penalises: the two penalties add up, so an ``L2`` attached
    twice decays twice as fast — in the loss, or in an optimizer both are folded into."""
    mine = {id(b.param): b for b in reg.bindings.weights}
    for other in list(_HANDLES):
        if other.removed or other is reg:
            continue
        shared = [(mine[id(b.param)], b) for b in other.bindings.weights if id(b.param) in mine]
        if shared:
            names = ", ".join(repr(new.param_name) for new, _ in shared[:5])
            new, old = shared[0]
            warnings.warn(
                f"reglab: parameter(s) {names}{' ...' if len(shared) > 5 else ''} already have "
                f"a weight penalty from another attach() handle ({old.penalty!r} on "
                f"{old.param_name!r}); this handle adds {new.penalty!r} on top, so both apply "
                "(an L2 attached twice decays twice as fast). Call remove() on the other "
                "handle, or merge the rules into one attach() call.",
                RuntimeWarning,
                stacklevel=3,
            )
            break
    _HANDLES.add(reg)
