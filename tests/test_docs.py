"""The documentation site builds with ``mkdocs build --strict``: no broken links, no
docstring that the API reference cannot parse; the reference documents every public class and
function, user-facing ones first, with formatted signatures; the first examples of the README
and the guides run as written."""

from __future__ import annotations

import contextlib
import html
import importlib
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_block(path: Path, heading: str) -> str:
    """The first ```python block after the line ``heading`` of a Markdown file."""
    text = path.read_text()
    start = text.index(f"\n{heading}\n")
    begin = text.index("```python\n", start) + len("```python\n")
    return text[begin : text.index("```", begin)]


def resolve(path: str) -> object:
    """The object a ``::: path`` directive documents: the longest importable module prefix,
    then attributes (``reglab.data.digits.digits`` is the function in module ``digits``)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ModuleNotFoundError(path)


def plain(page: str) -> str:
    """An HTML page's text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_docs_build_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "site"
    page = (site / "reference" / "penalties" / "index.html").read_text()
    assert "l2 * sum(x**2)" in page  # the API reference is built from the docstrings
    # User-facing classes first: the penalties page opens with L1, the base class comes last.
    headings = re.findall(r'<h3 id="reglab\.penalties\.(\w+)"', page)
    assert headings[0] == "L1", headings
    assert headings.index("Penalty") > headings.index("TemporalDifference"), headings
    # Signatures are formatted (mkdocstrings runs Ruff or Black: the docs extra has Ruff),
    # one parameter a line, not one long line.
    attach = plain((site / "reference" / "attach" / "index.html").read_text())
    assert re.search(r"attach\(\n    model: Module,\n    rules: ", attach), attach[:2000]
    # Every public class and function of a documented package has its entry.
    for source in sorted((ROOT / "docs" / "reference").glob("*.md")):
        targets = re.findall(r"^::: ([\w.]+)$", source.read_text(), flags=re.M)
        if not targets:
            continue
        built = (site / "reference" / source.stem / "index.html").read_text()
        for target in targets:
            module = resolve(target)
            if not inspect.ismodule(module):
                continue  # a class or function, documented by itself
            for name in getattr(module, "__all__", ()):
                obj = getattr(module, name)
                if inspect.isclass(obj) or inspect.isfunction(obj):
                    assert f'.{name}"' in built, f"{source.name}: no entry for {target}.{name}"


def test_readme_links_resolve() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("README.md", "## Attach regularizers to any model"),
        ("docs/guide/attach.md", "## A first example"),
        ("docs/guide/getting-started.md", "## Regularize a model you already have"),
    ],
)
def test_first_examples_run_as_written(path: str, heading: str) -> None:
    code = python_block(ROOT / path, heading)
    namespace: dict = {"__name__": "__example__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, path, "exec"), namespace)
    model, reg = namespace["model"], namespace["reg"]
    # What the examples' comments promise: the three named terms, and remove() detached the
    # activity hook.
    assert set(reg.terms()) == {"0.kernel", "2.kernel", "1.activity"}
    if "reg.remove()" in code:
        assert not model[1]._forward_hooks
    if "print(" in code:
        assert "'0.kernel'" in out.getvalue(), out.getvalue()
        assert 0.17 < float(reg.terms()["0.kernel"]) < 0.19  # the value the comment shows
