"""A name -> class registry with Keras' ``get()`` semantics, shared by penalties and constraints."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from reglab._validation import InvalidParameterError

__all__ = ["Registry"]

T = TypeVar("T")
#: Keys of a config dict: ours, plus the two that ``keras.regularizers.serialize`` adds.
_CONFIG_KEYS = {"class_name", "config", "module", "registered_name"}


class Registry(Generic[T]):
    """Resolve identifiers of one family (``"penalty"``, ``"constraint"``) to callables.

    ``get`` accepts, like ``keras.regularizers.get``:

    * ``None`` -> ``None``;
    * a registered alias or class name (``"l2"``, ``"L2"``) -> an instance with default arguments;
    * a config dict ``{"class_name": "L2", "config": {"l2": 1e-4}}`` (what ``serialize``
      returns) -> ``L2.from_config({"l2": 1e-4})``; Keras' own ``serialize()`` dicts, with
      their extra ``"module"`` and ``"registered_name"`` keys, are read the same way (those
      two keys are ignored; the config is applied to the tensor as PyTorch stores it);
    * a registered class -> an instance with default arguments;
    * any other callable -> returned unchanged (custom penalties/constraints).

    Anything else raises ``InvalidParameterError`` naming what was given and
    what is known.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._by_name: dict[str, type[T]] = {}

    def register(self, *aliases: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering the class under its name and each alias."""

        def decorator(cls: type[T]) -> type[T]:
            for name in (cls.__name__, *aliases):
                if name in self._by_name and self._by_name[name] is not cls:
                    raise RuntimeError(f"{self.family} name {name!r} registered twice")
                self._by_name[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        """All names and aliases that ``get`` accepts as strings, sorted."""
        return sorted(self._by_name)

    def classes(self) -> list[type[T]]:
        """Every registered class once, in registration order."""
        return list(dict.fromkeys(self._by_name.values()))

    def serialize(self, obj: Any) -> dict[str, Any]:
        """Return ``{"class_name": ..., "config": obj.get_config()}`` for a registered object."""
        cls = type(obj)
        if self._by_name.get(cls.__name__) is not cls:
            raise InvalidParameterError(
                f"Cannot serialize {obj!r}: {cls.__name__} is not a registered {self.family}."
            )
        return {"class_name": cls.__name__, "config": obj.get_config()}

    def get(self, identifier: Any) -> Any:
        """Resolve ``identifier`` (see the class docstring)."""
        if identifier is None:
            return None
        if isinstance(identifier, str):
            cls = self._by_name.get(identifier)
            if cls is None:
                raise self._unknown(identifier)
            return self._default(cls)
        if isinstance(identifier, dict):
            keys = set(identifier)
            if not {"class_name", "config"} <= keys <= _CONFIG_KEYS or not isinstance(
                identifier.get("config"), dict
            ):
                raise InvalidParameterError(
                    f"A {self.family} config dict must have the keys 'class_name' and "
                    "'config' (a dict), and may have Keras' 'module' and 'registered_name'. "
                    f"Got {identifier!r} instead."
                )
            cls = self._by_name.get(identifier["class_name"])
            if cls is None:
                raise self._unknown(identifier["class_name"])
            accepted = list(inspect.signature(cls).parameters)
            unknown = sorted(set(identifier["config"]) - set(accepted))
            if unknown:
                raise InvalidParameterError(
                    f"{cls.__name__} has no argument {unknown[0]!r}; its config takes "
                    f"{', '.join(accepted)}."
                )
            return cls.from_config(identifier["config"])  # type: ignore[attr-defined]
        if inspect.isclass(identifier):
            if identifier in self._by_name.values():
                return self._default(identifier)
            raise self._unknown(identifier)
        if callable(identifier):
            return identifier
        raise self._unknown(identifier)

    def _default(self, cls: type[T]) -> T:
        try:
            return cls()
        except TypeError as err:  # e.g. ToReference needs its reference tensor
            raise InvalidParameterError(
                f"{cls.__name__} cannot be built from its name alone ({err}). Construct it "
                f"directly or pass a config dict with its arguments."
            ) from None

    def _unknown(self, identifier: Any) -> InvalidParameterError:
        known = ", ".join(repr(n) for n in self.names())
        return InvalidParameterError(
            f"Could not interpret {self.family} identifier {identifier!r}. Expected None, one "
            f"of {known}, a config dict {{'class_name': ..., 'config': {{...}}}}, or a callable."
        )
