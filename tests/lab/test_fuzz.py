"""Fuzzing ``reglab run`` with generated bad study files and bad command lines, as a careless
or hostile user would: every case must exit 2 with one line that names a study key or a
command-line option, print no traceback, and leave no run directory behind.

Cases are drawn from a seeded generator over the study schema itself (every field of the
``[data]``, ``[train]`` and ``[model]`` tables and every grid-entry technique), so a field
added later is fuzzed too."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
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
    # At a line's start, never inside a string (where "[[" would still be valid TOML).
    cut = rng.choice([i + 1 for i, c in enumerate(text[:-1]) if c == "\n"])
    return text[:cut] + rng.choice(["= =", "[[", '"unterminated', "]"]) + text[cut:], "fz.toml"


BIG = "1" + "0" * 400  # beyond the range of a float
#: Hostile inputs (issue 24): each was an internal error, a hang, or an error naming nothing.
HOSTILE = [
    (_study(_with("train", "lr", BIG)), "train.lr"),
    (_study(_with("train", "epochs", BIG)), "train.epochs"),
    (
        _study(VALID, f'rules."fc*".kernel = {{ class_name = "L2", config = {{ l2 = '
                      f"{{ log = [1e-5, {BIG}], num = 2 }} }} }}\n"),
        "kernel.config.l2",
    ),
    # 500 levels overflow tomllib's recursion (an error naming the file) at Python's default
    # limit; past an earlier torch.compile in the process (inductor raises the limit to 2000)
    # tomllib parses them and the depth check refuses them: either is one named line.
    (_study(VALID, "x = " + "{ a = " * 500 + "1" + " }" * 500 + "\n"), "fz.toml|nested more than"),
    (_study(VALID, "x = " + "[" * 3000 + "1" + "]" * 3000 + "\n"), "fz.toml"),
    (_study(VALID, "x = " + "{ a = " * 40 + "1" + " }" * 40 + "\n"), "nested more than"),
    (_study(VALID).replace("seeds = [0]", f"seeds = [{2**63}]"), "fz.seeds"),
    (_study(VALID).replace("seeds = [0]", f"seeds = [{BIG}]"), "fz.seeds"),
    (_study(VALID).replace('name = "a"', f'name = "{"a" * 300}"'), "fz.grid[0].name"),
    (_study(VALID).replace('name = "fz"', f'name = "{"z" * 250}"'), ".name: too long"),
    (
        _study(VALID, 'train.lr = { log = [1e-5, 1e-1], num = 1000000000 }\n'),
        "--max-trials 1000000000",
    ),
    (
        _study(VALID, "train.lr = { values = [" + ", ".join(["0.1"] * 200) + "] }\n"
                      "train.batch_size = { values = [" + ", ".join(["8"] * 200) + "] }\n"),
        "40,000 trials",
    ),
]  # fmt: skip


def _hostile(rng: random.Random) -> tuple[str, str]:
    return rng.choice(HOSTILE)


GENERATORS = [_bad_field, _bad_technique, _bad_rule, _bad_unknown_key, _bad_syntax, _hostile]
N_CASES = 100


def _cases(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [rng.choice(GENERATORS)(rng) for _ in range(n)]


def _reglab(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exit_:  # argparse exits for usage errors
        return int(exit_.code or 0)


def _check_one_line(capsys, named: str) -> None:
    """One line on stderr, no traceback, naming ``named`` (``a|b``: either)."""
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out, err
    assert err.count("\n") == 1, err
    assert err.startswith("reglab"), err
    assert any(n in err for n in named.split("|")), f"{named!r} is not named in: {err}"


@pytest.mark.parametrize("case", range(N_CASES))
def test_generated_bad_study_files(
    case: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)  # a stray default run directory would appear here
    text, named = _cases(N_CASES, seed=2026)[case]
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


@pytest.mark.parametrize("case", range(len(HOSTILE)))
@pytest.mark.parametrize("command", ["run", "show"])
def test_hostile_study_files(
    case: int, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Every hostile input, through both commands: exit 2, one line naming the key or file."""
    monkeypatch.chdir(tmp_path)
    text, named = HOSTILE[case]
    study = tmp_path / "fz.toml"
    study.write_text(text)
    out = ["--out", str(tmp_path / "run"), "--no-progress"] if command == "run" else []
    over_cap = "--max-trials" in named or named.endswith(" trials")
    if command == "show" and over_cap:  # counted, never built: summarised instead of listed
        assert _reglab([command, str(study)]) == 0
        assert "trials: too many to list" in capsys.readouterr().out
        return
    assert _reglab([command, str(study), *out]) == 2, text[:300]
    _check_one_line(capsys, named)
    assert not (tmp_path / "run").exists()


def test_markup_in_a_description_prints_literally(tmp_path: Path, capsys) -> None:
    study = tmp_path / "fz.toml"
    markup = "[bold red]loud[/] [/oops] [link=x]y"
    study.write_text(_study(VALID).replace('name = "fz"', f'name = "fz"\ndescription = "{markup}"'))
    assert _reglab(["show", str(study)]) == 0
    assert markup in capsys.readouterr().out


def test_show_summarises_a_grid_too_large_to_build(tmp_path: Path, capsys) -> None:
    study = tmp_path / "fz.toml"
    study.write_text(_study(VALID, "train.lr = { log = [1e-5, 1e-1], num = 1000000000 }\n"))
    assert _reglab(["show", str(study)]) == 0
    out = capsys.readouterr().out
    assert "1,000,000,000 trials: too many to list" in out
    assert "train.lr 1,000,000,000" in out


def test_show_lists_at_most_200_grid_points(tmp_path: Path, capsys) -> None:
    study = tmp_path / "fz.toml"
    values = ", ".join(f"{0.001 * (i + 1):g}" for i in range(250))
    study.write_text(_study(VALID, f"train.lr = {{ values = [{values}] }}\n"))
    assert _reglab(["show", str(study)]) == 0
    out = capsys.readouterr().out
    assert "250 grid points x 1 seeds = 250 trials" in out
    assert "... 50 more" in out


def test_max_trials_moves_the_cap() -> None:
    from reglab.lab.settings.studyfile import GridTooLarge, parse_study

    raw = {
        "name": "s",
        "seeds": [0, 1],
        "data": {"subset": 100},
        "model": {"sizes": [64, 8, 10]},
        "grid": [{"name": "a", "train": {"lr": {"values": [0.1, 0.2, 0.3]}}}],
    }
    with pytest.raises(GridTooLarge, match=r"s.grid: 6 trials .* exceed the cap of 5; .*"
                                           r"--max-trials 6"):  # fmt: skip
        parse_study(raw, "s", max_trials=5)
    assert len(parse_study(raw, "s", max_trials=6).trials) == 6


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[]", "expected a JSON object (a study document), got list"),
        ('{"name": "t", ', "not valid JSON (Expecting property name enclosed in double quotes"),
        ("\xff\xfe", "not UTF-8 text"),
        ('{"name": "t", "grid": 3}', "t.grid: expected a non-empty array"),
    ],
    ids=["list", "truncated", "binary", "wrong shape"],
)
@pytest.mark.parametrize("command", ["report", "resume"])
def test_a_bad_study_json_names_the_file(
    tmp_path: Path, capsys, content: str, said: str, command: str
) -> None:
    """Before: AttributeError (exit 1) from report for ``[]``; a JSON error naming no file."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "study.json").write_bytes(content.encode("latin-1"))
    args = ["report", str(run)] if command == "report" else ["run", "--resume", str(run)]
    assert _reglab(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{run / 'study.json'}: " in err, err
    assert said in err, err


@contextlib.contextmanager
def _tmpfs(mount: Path, size: str):
    """A tiny file system of its own at ``mount`` (needs root and tmpfs; else skipped)."""
    import os
    import subprocess

    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
            capture_output=True,
        ).returncode
    ):
        pytest.skip("needs root and tmpfs to make a full disk")
    try:
        yield mount
    finally:
        gc.collect()  # a failed run's storage engine, in a reference cycle, holds its file
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A tiny file system, filled up."""
    with _tmpfs(tmp_path / "disk", "64k") as mount:
        try:
            with (mount / "filler").open("wb", buffering=0) as f:
                while True:
                    f.write(b"x" * 4096)
        except OSError:  # full
            pass
        yield mount


def test_a_full_disk_names_the_file(full_disk: Path, tmp_path: Path, capsys) -> None:
    """Before: ``[Errno 28] No space left on device`` with no path."""
    study = tmp_path / "fz.toml"
    study.write_text(_study(VALID))
    out = full_disk / "run"
    assert _reglab(["run", str(study), "--out", str(out), "--no-progress"]) == 2
    _check_one_line(capsys, f"{out / 'study.json'}: cannot write: No space left on device")


def test_a_store_that_fills_the_disk_is_named(tmp_path: Path, capsys) -> None:
    """The study files fit, the SQLite storage does not. Before: "the results store failed:
    database or disk is full", without the file."""
    study = tmp_path / "fz.toml"
    study.write_text(_study(VALID))
    with _tmpfs(tmp_path / "disk", "96k") as mount:
        out = mount / "run"
        assert _reglab(["run", str(study), "--out", str(out), "--no-progress"]) == 2
        _check_one_line(
            capsys, f"the results store {out / 'storage.db'} failed: database or disk is full"
        )
