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
before it creates a run directory, and again on ``--resume``; the model builder checks again
when it is called (:meth:`Trust.active` makes a trust current in Python code).
``reglab show`` and ``reglab report`` never build a model, so they never import user code.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from reglab._validation import InvalidParameterError
from reglab.lab.settings.studyfile import Study

__all__ = ["ENVIRONMENT", "Trust", "UntrustedCode"]

#: The environment variable listing trusted factory modules (comma-separated).
ENVIRONMENT = "REGLAB_TRUST_FACTORIES"


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
        naming the first point that is not)."""
        for point in study.points:
            if point.config.model_kind.user_code:
                self.require(
                    point.config.model.factory,  # type: ignore[attr-defined]
                    f"{study.name}: grid point {point.label!r}",
                )

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
