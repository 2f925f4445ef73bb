"""Fuzzing ``reglab run`` with generated bad study files and bad command lines, as a careless
or hostile user would: every case must exit 2 with one line that names a study key or a
command-line option, print no traceback, and leave no run directory behind.

Cases are drawn from a seeded generator over the study schema itself (every field of the
``[data]``, ``[train]`` and ``[model]`` tables and every grid-entry technique), so a field
added later is fuzzed too."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.lab.kinds.mlp import MLPModel
from reglab.lab.settings.config import LEVELS, TECHNIQUES
from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.train import TrainConfig

VALID = {
    "data": {"name": '"digits"', "subset": "100"},
    "model": {"sizes": "[64, 8, 10]"},
    "train": {"epochs": "1", "batch_size": "32"},
}
TABLES = {"data": DataConfig, "model": MLPModel, "train": TrainConfig}

# Values that no field accepts: a table with a key no table has, and (for fields whose
# default is a number) text, non-finite numbers, booleans and lists.
ANY_FIELD = ["{ no_such_key = 1 }"]
NUMERIC = ['"text"', "nan", "inf", "-inf", "true", "[1, 2]", "-1e308"]


def _study(sections: dict[str, dict[str, str]], grid: str = "") -> str:
    text = 'name = "fz"\nseeds = [0]\n'
    for name, table in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())
    return text + f'[[grid]]\nname = "a"\n{grid}'


def _with(table: str, key: str, value: str) -> dict[str, dict[str, str]]:
    return {name: {**body, **({key: value} if name == table else {})}
            for name, body in VALID.items()}  # fmt: skip


def _bad_field(rng: random.Random) -> tuple[str, str]:
    table = rng.choice(sorted(TABLES))
    field = rng.choice(dataclasses.fields(TABLES[table]))
    numeric = isinstance(field.default, (int, float)) and not isinstance(field.default, bool)
    value = rng.choice(ANY_FIELD + (NUMERIC if numeric else []))
    # [data] is the study's alone; a grid entry may override [model] and [train].
    if table == "data" or rng.random() < 0.5:
        return _study(_with(table, field.name, value)), f"{table}.{field.name}"
    return _study(VALID, f"{table}.{field.name} = {value}\n"), f"{table}.{field.name}"


def _bad_technique(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        key = rng.choice(sorted(TECHNIQUES))
        return _study(VALID, f"{key} = {{ no_such_key = 1 }}\n"), key
    key = rng.choice(sorted(LEVELS))
    return _study(VALID, f"{key} = {rng.choice([*NUMERIC, '-0.5'])}\n"), key


def _bad_rule(rng: random.Random) -> tuple[str, str]:
    rule = rng.choice(
        [
            '"fc*".kernel = "l5"',
            '"nomatch*".kernel = "l2"',
            '"fc*".kernel = { class_name = "L2", config = { l2 = -1 } }',
            '"fc*".kernel = { class_name = "L2", config = { l2 = { log = [1e-5], num = 3 } } }',
            '"fc*".kernel = { class_name = "L2", config = { l2 = { values = [] } } }',
            '"fc*".no_such_kind = "l2"',
            '"fc*" = 3',
        ]
    )
    return _study(VALID, f"rules.{rule}\n"), "rules"


def _bad_unknown_key(rng: random.Random) -> tuple[str, str]:
    table = rng.choice([*sorted(TABLES), "top"])
    if table == "top":
        return "no_such_key = 1\n" + _study(VALID), "no_such_key"
    return _study(_with(table, "no_such_key", "1")), f"{table}.no_such_key"


def _bad_syntax(rng: random.Random) -> tuple[str, str]:
    text = _study(VALID)
    cut = rng.randrange(10, len(text) - 5)
    return text[:cut] + rng.choice(["= =", "[[", '"unterminated', "]"]) + text[cut:], "fz.toml"


GENERATORS = [_bad_field, _bad_technique, _bad_rule, _bad_unknown_key, _bad_syntax]


def _cases(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [rng.choice(GENERATORS)(rng) for _ in range(n)]


def _reglab(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exit_:  # argparse exits for usage errors
        return int(exit_.code or 0)


def _check_one_line(capsys, named: str) -> None:
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out, err
    assert err.count("\n") == 1, err
    assert err.startswith("reglab"), err
    assert named in err, f"{named!r} is not named in: {err}"


@pytest.mark.parametrize("case", range(80))
def test_generated_bad_study_files(
    case: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)  # a stray default run directory would appear here
    text, named = _cases(80, seed=2026)[case]
    study = tmp_path / "fz.toml"
    study.write_text(text)
    out = tmp_path / "run"
    assert _reglab(["run", str(study), "--out", str(out), "--no-progress"]) == 2, text
    _check_one_line(capsys, named)
    assert not out.exists(), text
    assert not (tmp_path / "runs").exists(), text


def test_a_study_file_that_is_not_text(tmp_path: Path, capsys) -> None:
    study = tmp_path / "fz.toml"
    study.write_bytes(bytes(random.Random(0).randrange(128, 256) for _ in range(200)))
    assert _reglab(["run", str(study), "--out", str(tmp_path / "run")]) == 2
    _check_one_line(capsys, str(study))
    assert not (tmp_path / "run").exists()


BAD_OPTIONS = [
    (["--jobs", "0"], "--jobs"),
    (["--jobs", "two"], "--jobs"),
    (["--epochs", "-1"], "--epochs"),
    (["--epochs", "1.5"], "--epochs"),
    (["--seeds", ""], "--seeds"),
    (["--seeds", "a,b"], "--seeds"),
    (["--threads", "-2"], "--threads"),
    (["--heartbeat", "0"], "--heartbeat"),
    (["--grace", "soon"], "--grace"),
    (["--storage", "::"], "--storage"),
    (["--storage", "oracle://x/y"], "--storage"),
    (["--trust-factory", "not a module"], "--trust-factory"),
    (["--no-such-option"], "--no-such-option"),
    (["--resume", "/no/such/run"], "/no/such/run"),
]


@pytest.mark.parametrize(("options", "named"), BAD_OPTIONS, ids=lambda v: str(v))
def test_bad_command_lines(
    options: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "fz.toml"
    study.write_text(_study(VALID))
    positional = [] if "--resume" in options else [str(study)]
    out = [] if "--resume" in options else ["--out", str(tmp_path / "run")]
    assert _reglab(["run", *positional, *out, *options, "--no-progress"]) == 2
    _check_one_line(capsys, named)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "runs").exists()
