"""Trusted code: the one place where a study can make reglab import and call code.

A study file is data (TOML, never evaluated), and so is a run directory (``study.json``,
JSON) and a storage's records. The only thing in them that names code is a model factory,
``[model] kind = "factory"`` with ``factory = "package.module:function"``: building that
model imports the module and calls the function with the study's ``options``. Since study
files and run directories are passed between people and machines (and PostgreSQL workers
run whatever study they are pointed at), a factory runs only when the person running reglab
trusts its module:

* on the command line, ``reglab run --trust-factory MODULE`` / ``reglab worker
  --trust-factory MODULE`` (repeatable), or
* in the environment, ``REGLAB_TRUST_FACTORIES="pkg_a,pkg_b"`` (comma-separated),

where trusting ``mypkg`` trusts ``mypkg.models`` too. ``reglab run`` checks every grid point
before it creates a run directory, and again on ``--resume``: trusted, importable, and
callable with the factory's keyword arguments (:meth:`Trust.check`); the model builder checks
again when it is called (:meth:`Trust.active` makes a trust current in Python code).
``reglab show`` and ``reglab report`` never build a model, so they never import user code.

**Where modules are found**: on ``sys.path``, then in the folders of :data:`FACTORY_PATH`
(``reglab run`` puts the study file's folder there, and its workers inherit it), then in the
working directory, so ``mypkg/`` beside the study or in the working directory needs no
``PYTHONPATH``.

**The factory's signature** (:func:`call_factory`): it is called with keyword arguments
``features`` (int: input features of one row), ``classes`` (int), ``image_shape``
(``(C, H, W)`` when the data are images, else None) and every entry of ``[model] options``,
and returns an ``nn.Module`` that maps a batch of rows ``(B, features)`` (images flattened as
``C·H·W``, as the built-in datasets) to logits ``(B, classes)``::

    def make_net(features, classes, image_shape=None, hidden=64):
        return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

From Python, :func:`provide` registers a callable for one run (``reglab.lab.run_study(...,
model=fn)``): it is the caller's own code object, so no trust is asked for.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reglab._validation import InvalidParameterError
from reglab.lab.settings.studyfile import Study
from reglab.regularization.rules import resolve

__all__ = [
    "ENVIRONMENT",
    "FACTORY_ARGUMENTS",
    "FACTORY_PATH",
    "PROVIDED",
    "Trust",
    "UntrustedCode",
    "call_factory",
    "import_factory",
    "look_beside",
    "provide",
]

#: The environment variable listing trusted factory modules (comma-separated).
ENVIRONMENT = "REGLAB_TRUST_FACTORIES"
#: The environment variable of extra folders where factory modules are looked for
#: (``os.pathsep``-separated; ``reglab run STUDY`` sets it to the study file's folder).
FACTORY_PATH = "REGLAB_FACTORY_PATH"
#: What a factory receives besides its ``options`` (keyword arguments).
FACTORY_ARGUMENTS = ("features", "classes", "image_shape")
#: How ``[model] factory`` names a callable given from Python (:func:`provide`).
PROVIDED = "<python>:"

_PROVIDED: dict[str, Callable[..., Any]] = {}
_COUNTER = itertools.count()


class UntrustedCode(InvalidParameterError):
    """A study names a factory whose module the user has not trusted."""


@dataclass(frozen=True)
class Trust:
    """The modules whose factories may be imported and called (and their submodules)."""

    modules: tuple[str, ...] = ()

    @classmethod
    def of(cls, flags: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> Trust:
        """``--trust-factory`` values plus :data:`ENVIRONMENT`'s."""
        environ = os.environ if environ is None else environ
        listed = [m.strip() for m in environ.get(ENVIRONMENT, "").split(",")]
        modules = [*(flags or ()), *listed]
        for module in modules:
            if module and not all(part.isidentifier() for part in module.split(".")):
                raise InvalidParameterError(
                    f"--trust-factory / {ENVIRONMENT}: {module!r} is not a module name "
                    "(e.g. mypkg or mypkg.models)"
                )
        return cls(tuple(dict.fromkeys(m for m in modules if m)))

    def allows(self, factory: str) -> bool:
        if factory.startswith(PROVIDED):  # the caller's own object, not a name in a file
            return True
        module = factory.partition(":")[0]
        return any(module == m or module.startswith(m + ".") for m in self.modules)

    def require(self, factory: str, where: str) -> None:
        """Raise :class:`UntrustedCode`, saying how to allow it, unless ``factory`` is
        trusted."""
        if self.allows(factory):
            return
        module = factory.partition(":")[0]
        raise UntrustedCode(
            f"{where}: the model factory {factory!r} is code, and reglab runs code from a "
            f"study only when you trust it: add --trust-factory {module} (or set "
            f"{ENVIRONMENT}={module}) if you trust that module"
        )

    def check(self, study: Study) -> None:
        """Every factory of ``study``'s grid points is trusted (else :class:`UntrustedCode`
        naming the first point that is not), then importable and callable with its keyword
        arguments (else :class:`~reglab._validation.InvalidParameterError`): what
        ``reglab run`` checks before it creates a run directory. Trusted modules are
        imported here; no factory is called."""
        factories = {}
        for point in study.points:
            if point.config.model_kind.user_code:
                where = f"{study.name}: grid point {point.label!r}"
                model = point.config.model
                self.require(model.factory, where)  # type: ignore[attr-defined]
                factories.setdefault((model.factory, tuple(model.options)), where)  # type: ignore[attr-defined]
        for (factory, options), where in factories.items():
            function = import_factory(factory, f"{where}: model.factory")
            _bind(function, factory, dict.fromkeys(options), f"{where}: model.factory")
        self._check_rules(study)

    def _check_rules(self, study: Study) -> None:
        """The rules of every factory point match the factory's model: it is built once per
        point with rules (trusted code, called here; the random state is left as it was), so a
        glob that matches none of its modules, or a factory that fails, stops the run before
        any run directory exists."""
        for point in study.points:
            config = point.config
            if not (config.model_kind.user_code and config.rules):
                continue
            where = f"{study.name}: grid point {point.label!r}"
            with self.active(), torch.random.fork_rng():
                try:
                    net = config.network()
                except InvalidParameterError:
                    raise
                except Exception as err:  # the user's code failed: say where, in one line
                    raise InvalidParameterError(
                        f"{where}: model.factory {config.model.factory!r} raised "  # type: ignore[attr-defined]
                        f"{type(err).__name__}: {err}"
                    ) from None
            try:
                resolve(net, config.rules_mapping(), "batch")
            except InvalidParameterError as err:
                raise InvalidParameterError(f"{where}: rules: {err}") from None

    @contextlib.contextmanager
    def active(self) -> Iterator[Trust]:
        """Make this the trust that model builders check (in this thread / task)."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    @staticmethod
    def current() -> Trust:
        """The active trust (none: no module is trusted)."""
        return _CURRENT.get() or Trust()


_CURRENT: contextvars.ContextVar[Trust | None] = contextvars.ContextVar("trust", default=None)


# -- finding, checking and calling a factory ---------------------------------------------------
def _folders() -> list[str]:
    """Where factory modules are looked for after ``sys.path``: :data:`FACTORY_PATH`'s
    folders, then the working directory."""
    listed = [f for f in os.environ.get(FACTORY_PATH, "").split(os.pathsep) if f]
    return list(dict.fromkeys(str(Path(f).resolve()) for f in [*listed, os.getcwd()]))


def look_beside(study: str | Path | None) -> None:
    """Look for factory modules in the folder of the study file ``study`` too (when it is a
    file, not a built-in name): its folder joins :data:`FACTORY_PATH` in ``os.environ``, so
    worker processes started from here look there as well."""
    if study is None or not Path(study).is_file():
        return
    folder = str(Path(study).resolve().parent)
    listed = [f for f in os.environ.get(FACTORY_PATH, "").split(os.pathsep) if f]
    if folder not in listed:
        os.environ[FACTORY_PATH] = os.pathsep.join([folder, *listed])


@contextlib.contextmanager
def _search_path() -> Iterator[None]:
    added = [f for f in _folders() if f not in sys.path]
    sys.path.extend(added)  # after sys.path: never shadows an installed package
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def import_factory(factory: str, where: str = "model.factory") -> Callable[..., Any]:
    """The callable ``factory`` (``"package.module:function"``, or one given to
    :func:`provide`) names; an :class:`~reglab._validation.InvalidParameterError` at ``where``
    when it cannot be imported or is not callable. Does not check trust."""
    if factory.startswith(PROVIDED):
        if factory not in _PROVIDED:
            raise InvalidParameterError(
                f"{where}: {factory!r} names a model given to reglab.lab.run_study in another "
                "Python process; run it from Python again with model=..."
            )
        return _PROVIDED[factory]
    module_name, _, attr = factory.partition(":")
    try:
        with _search_path():
            module = importlib.import_module(module_name)
        function = module
        for part in attr.split("."):
            function = getattr(function, part)
    except (ImportError, AttributeError) as err:
        raise InvalidParameterError(
            f"{where}: cannot import {factory!r} ({err}); expected 'package.module:function' "
            "importable from sys.path, the study file's folder or the working directory"
        ) from None
    if not callable(function):
        raise InvalidParameterError(
            f"{where}: {factory!r} is not callable (a {type(function).__name__})"
        )
    return function


def _bind(
    function: Callable[..., Any], factory: str, options: Mapping[str, Any], where: str
) -> None:
    """Whether ``function`` accepts the factory's keyword arguments; a one-line error
    saying what it must accept otherwise."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: the call will tell
        return
    try:
        signature.bind(**dict.fromkeys(FACTORY_ARGUMENTS), **options)
    except TypeError as err:
        given = ", ".join([*FACTORY_ARGUMENTS, *options])
        raise InvalidParameterError(
            f"{where}: {factory!r} must accept the keyword arguments {given} ({err}); "
            "e.g. def make(features, classes, image_shape=None, **options)"
        ) from None


def call_factory(
    function: Callable[..., Any],
    factory: str,
    *,
    features: int,
    classes: int,
    image_shape: tuple[int, int, int] | None,
    options: Mapping[str, Any],
    where: str = "model.factory",
) -> nn.Module:
    """``function(features=..., classes=..., image_shape=..., **options)``, checked: the
    signature accepts them, and the result is an ``nn.Module``."""
    _bind(function, factory, options, where)
    model = function(features=features, classes=classes, image_shape=image_shape, **options)
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"{where}: {factory!r} returned a {type(model).__name__}; a factory must return "
            "an nn.Module"
        )
    return model


@contextlib.contextmanager
def provide(function: Callable[..., Any]) -> Iterator[str]:
    """Register ``function`` as a model factory while the block runs; yields the
    ``[model] factory`` value that names it (``"<python>:make_net#0"``). Such a factory needs
    no trust: it is the caller's own object, which a study file cannot name from outside
    this process."""
    if not callable(function):
        raise InvalidParameterError(
            f"The 'model' parameter of run_study must be callable. Got {function!r} instead."
        )
    name = getattr(function, "__qualname__", type(function).__name__)
    key = f"{PROVIDED}{name}#{next(_COUNTER)}"
    _PROVIDED[key] = function
    try:
        yield key
    finally:
        _PROVIDED.pop(key, None)
