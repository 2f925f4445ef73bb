"""The lab's structure: every module imports alone, no import circle, one kind registry.

The import test runs each module of ``reglab.lab`` first in a fresh interpreter: a circle
between two modules shows up as an ``ImportError`` (partially initialised module) for one of
the two import orders. The static check reads every ``import`` in src/reglab/lab (function-level
and ``TYPE_CHECKING`` ones too) and fails on any strongly connected component.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import reglab.lab
from reglab.lab.settings import registry
from reglab.lab.settings.config import TrialConfig

SRC = pathlib.Path(reglab.lab.__file__).parent.parent.parent
LAB = SRC / "reglab" / "lab"


def _module(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


MODULES = sorted(_module(p) for p in LAB.rglob("*.py"))


@pytest.mark.slow
def test_every_lab_module_imports_alone_in_a_fresh_interpreter() -> None:
    # One subprocess per module (each a fresh interpreter); one script runs them all so the
    # test costs one interpreter start (~3 s: torch) per module.
    script = (
        "import subprocess, sys\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'],\n"
        "                       capture_output=True, text=True)\n"
        "    if r.returncode:\n"
        "        bad.append(name + ': ' + r.stderr.strip().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *MODULES],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert done.returncode == 0, f"modules that fail to import alone:\n{done.stdout}{done.stderr}"


def _import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (every import statement, at any depth)."""
    files = {_module(p): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                deps |= {base} | {f"{base}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name and not name.startswith(d + ".")}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_circle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def test_no_import_circle_in_the_lab() -> None:
    assert _circles(_import_graph(SRC / "reglab")) == []


def test_no_type_checking_escape_in_the_lab() -> None:
    uses = [str(p.relative_to(SRC)) for p in LAB.rglob("*.py") if "TYPE_CHECKING" in p.read_text()]
    assert uses == []


def test_settings_import_no_kind_trial_or_sweep() -> None:
    """Imports point one way: settings <- trials/kinds <- sweep, cli."""
    graph = _import_graph(SRC / "reglab")
    for name, deps in graph.items():
        if name.startswith("reglab.lab.settings"):
            wrong = sorted(
                d
                for d in deps
                if d.startswith(("reglab.lab.kinds", "reglab.lab.work", "reglab.lab.sweep"))
            )
            assert wrong == [], f"{name} imports {wrong}"
        if name.startswith(("reglab.lab.work", "reglab.lab.kinds")):
            wrong = sorted(d for d in deps if d.startswith("reglab.lab.sweep"))
            assert wrong == [], f"{name} imports {wrong}"


# -- the kind registry ---------------------------------------------------------------------
def test_registry_lists_the_builtin_kinds_in_order() -> None:
    assert registry.names() == [
        "mlp",
        "cnn",
        "resnet",
        "factory",
        "autoencoder",
        "linear",
        "lstm-lm",
    ]
    families = {name: kind.family for name, kind in registry.kinds().items()}
    assert families == {
        "mlp": "classifier",
        "cnn": "classifier",
        "resnet": "classifier",
        "factory": "classifier",
        "autoencoder": "autoencoder",
        "linear": "regression",
        "lstm-lm": "language",
    }


@pytest.mark.parametrize("name", registry.names())
def test_every_kind_owns_its_table(name: str) -> None:
    kind = registry.get(name)
    assert kind.model.kind == name  # type: ignore[attr-defined]
    assert callable(kind.network)
    assert callable(kind.run)


def test_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"no trial kind 'gpt'; known: mlp, cnn, resnet"):
        registry.get("gpt")
    from reglab.lab.settings.schema import StudyError

    with pytest.raises(
        StudyError,
        match=r"p.model.kind: expected 'mlp', 'cnn', 'resnet', 'factory', 'autoencoder', 'linear' or 'lstm-lm' \(got 'gpt'\)",
    ):
        TrialConfig.parse({"data": {"name": "digits"}, "model": {"kind": "gpt"}}, "p", {})


def test_a_registered_kind_is_parsed_and_dispatched() -> None:
    """A new kind is one registration: the [model] parser and run_trial find it."""
    from dataclasses import dataclass
    from typing import ClassVar

    from torch import nn

    from reglab.lab import run_trial
    from reglab.lab.settings.schema import Table, integer, spec
    from reglab.lab.work.training import TrialOutcome

    @dataclass(frozen=True)
    class WideModel(Table):
        kind: ClassVar[str] = "test-wide"
        width: int = spec(8, integer(1))
        stochastic: ClassVar[bool] = False

        def check(self, data: object, where: object) -> None:
            del data, where

        def build(self, data: object) -> nn.Module:
            del data
            return nn.Sequential(nn.Linear(64, self.width), nn.ReLU(), nn.Linear(self.width, 10))

    def run(config: TrialConfig, seed: int, context: object) -> TrialOutcome:
        del context
        return TrialOutcome({"seed": float(seed)}, [], config.network())

    kind = registry.Kind(
        "test-wide", WideModel, "classifier", network=lambda c: c.model.build(c.data), run=run
    )
    registry.register(kind)
    try:
        config = TrialConfig.parse(
            {"data": {"name": "digits"}, "model": {"kind": "test-wide", "width": 5}}, "p", {}
        )
        assert config.model == WideModel(width=5)
        assert config.kind == "classifier"
        outcome = run_trial(config, 3)
        assert outcome.metrics == {"seed": 3.0}
        assert outcome.model[0].out_features == 5
    finally:
        registry._KINDS.pop("test-wide")
    with pytest.raises(KeyError):
        registry.get("test-wide")


def test_public_names_are_not_shadowed_by_subpackages() -> None:
    """A subpackage named like a public function (``reglab.lab.trials``) would replace it."""
    import importlib

    for name in MODULES:
        importlib.import_module(name)
    shadowed = [n for n in reglab.lab.__all__ if type(getattr(reglab.lab, n)).__name__ == "module"]
    assert shadowed == []
    assert callable(reglab.lab.trials)


def test_old_module_paths_re_export_the_moved_names() -> None:
    import importlib

    from reglab.lab._moved import MOVED

    for old, new in MOVED.items():
        module = importlib.import_module(old)
        for target in new:
            moved = importlib.import_module(target)
            for name in moved.__all__:
                assert name in module.__all__, f"{old} lacks {name}"
        assert module.__all__, old
    from reglab.lab.models import FactoryModel, MLPModel

    from reglab.lab.sweep import optuna_study_name  # a package now; its old names stay

    assert MLPModel.kind == "mlp"
    assert FactoryModel.kind == "factory"
    assert callable(optuna_study_name)
