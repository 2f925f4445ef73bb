"""Built-in studies shipped inside the package, and resolving a STUDY argument."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from reglab._optional import toml
from reglab.lab.settings.data import anchor
from reglab.lab.settings.init import resolve_paths as resolve_init_paths
from reglab.lab.settings.studyfile import Overrides, Study, StudyError, parse_study, read_toml

__all__ = ["builtin_studies", "expand", "find_study", "trials"]


def builtin_studies() -> dict[str, str]:
    """Built-in study name -> TOML text."""
    folder = resources.files("reglab.lab") / "studies"
    return {
        p.name.removesuffix(".toml"): p.read_text(encoding="utf-8")
        for p in sorted(folder.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".toml")
    }


def find_study(
    name_or_path: str, overrides: Overrides | None = None, max_trials: int | None = None
) -> tuple[Study, dict[str, Any], str]:
    """Resolve a built-in study name or a path to a TOML file, apply ``overrides`` and parse
    once (under the cap ``max_trials``): ``(study, document as parsed, file text)``."""
    studies = builtin_studies()
    if name_or_path in studies:
        text, origin = studies[name_or_path], name_or_path
        tomllib = toml()
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:  # pragma: no cover - shipped files parse
            raise StudyError(f"{origin}: not valid TOML: {err}") from None
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise StudyError(
                f"{name_or_path}: no such study file or built-in study; built-in "
                f"studies: {', '.join(studies)}"
            )
        raw, text = read_toml(path)
        origin = path.stem
        raw = anchor(raw, path.parent)  # [data] paths are relative to the study file
        raw = resolve_init_paths(raw, path.parent)  # [train] init paths, likewise
    raw = (overrides or Overrides()).apply(raw)
    return parse_study(raw, origin, max_trials), raw, text


def expand(study: Study) -> list[Any]:
    """All grid points of ``study``, in file order."""
    return list(study.points)


def trials(study: Study) -> list[Any]:
    """Every (grid point, seed) pair: one Optuna trial each."""
    return study.trials
