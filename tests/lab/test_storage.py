"""The results store: trials are popped exactly once from a shared SQLite file, damaged or
empty storage files are reported (never silently replaced) and can be rebuilt from the trial
folders, and ``--storage`` / ``--out`` problems are one line naming the option, before any run
directory exists."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
import warnings
from pathlib import Path

import optuna
import pytest

from reglab.cli import main
from reglab.lab.sweep import open_storage
from reglab.lab.sweep.storage import StorageError, check_file, check_url
from tests.lab.conftest import write_one_epoch

N_QUEUED = 120
POPPERS = 4


def _pop_all(url: str, start: float, found: multiprocessing.Queue) -> None:
    """Pop queued trials until the queue is empty (what each worker's ``ask`` does)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    storage = open_storage(url)
    study = optuna.load_study(study_name="queue", storage=storage)
    while time.time() < start:  # start together, to race
        time.sleep(0.001)
    popped = []
    while True:
        trial = study.ask()
        fixed = storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
        if not fixed:  # the queue was empty: ask() made a fresh trial
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            break
        popped.append(fixed["k"])
    found.put(popped)


def test_processes_sharing_an_sqlite_storage_pop_each_queued_trial_once(tmp_path: Path) -> None:
    """pysqlite starts a transaction at the first write, so Optuna's read-check-write pop is
    not atomic across processes; without BEGIN IMMEDIATE this popped 15-20 of 200 twice."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(study_name="queue", storage=open_storage(url))
        for k in range(N_QUEUED):
            study.enqueue_trial({"k": k})
    context = multiprocessing.get_context("spawn")
    found = context.Queue()
    start = time.time() + 8  # after every process has imported and connected
    procs = [context.Process(target=_pop_all, args=(url, start, found)) for _ in range(POPPERS)]
    for p in procs:
        p.start()
    popped = [found.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    everything = sorted(k for part in popped for k in part)
    assert everything == list(range(N_QUEUED)), (
        f"{len(everything) - len(set(everything))} trials popped twice; "
        f"per process: {[len(p) for p in popped]}"
    )


def _tiny(tmp_path: Path) -> Path:
    return write_one_epoch(tmp_path, "[0, 1]")


def _run(*args: str) -> int:
    return main(["run", *args, "--no-progress"])


@pytest.fixture
def finished_run(tmp_path: Path, capsys) -> Path:
    out = tmp_path / "run"
    assert _run(str(_tiny(tmp_path)), "--out", str(out)) == 0
    capsys.readouterr()
    return out


def _one_line(capsys, command: str = "run") -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"reglab {command}: error: "), err
    assert err.count("\n") == 1, err
    return err


def test_an_empty_storage_is_reported_and_kept(finished_run: Path, capsys) -> None:
    db = finished_run / "storage.db"
    db.write_bytes(b"")
    assert _run("--resume", str(finished_run)) == 2
    err = _one_line(capsys)
    assert f"the run's results store: {db} is empty (0 bytes)" in err
    assert f"reglab run --resume {finished_run} --rebuild-storage" in err
    assert db.stat().st_size == 0, "the damaged file must not be replaced silently"
    assert main(["report", str(finished_run)]) == 2
    assert "is empty (0 bytes)" in _one_line(capsys, "report")


def test_a_truncated_storage_is_reported_as_damaged(finished_run: Path, capsys) -> None:
    db = finished_run / "storage.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    for args, command in ((["run", "--resume", str(finished_run)], "run"),
                          (["report", str(finished_run)], "report")):  # fmt: skip
        assert main(args) == 2
        assert f"{db} is damaged (database disk image is malformed)" in _one_line(capsys, command)
    assert len(db.read_bytes()) == len(data) // 2


def test_rebuild_storage_keeps_every_finished_trial(finished_run: Path, capsys) -> None:
    """The trial folders are enough to rebuild the results: nothing is trained again."""
    db = finished_run / "storage.db"
    before = {
        p.parent.name: p.stat().st_mtime_ns for p in finished_run.glob("trials/*/metrics.json")
    }
    metrics = {k: json.loads((finished_run / "trials" / k / "metrics.json").read_text())
               for k in before}  # fmt: skip
    db.write_bytes(b"not sqlite at all")
    assert _run("--resume", str(finished_run)) == 2
    assert "is not an SQLite database" in _one_line(capsys)
    assert _run("--resume", str(finished_run), "--rebuild-storage") == 0
    out = capsys.readouterr().out
    assert "rebuilding the storage from 2 finished trial folders" in out
    assert "2/2 trials complete" in out
    assert [p.name for p in finished_run.glob("storage.db.damaged-*")], "set aside, not lost"
    after = {
        p.parent.name: p.stat().st_mtime_ns for p in finished_run.glob("trials/*/metrics.json")
    }
    assert after == before, "a finished trial was trained again"
    records = {
        t.user_attrs["label"] + str(t.user_attrs["seed"]): t.user_attrs["metrics"]
        for t in optuna.load_study(
            study_name=optuna.get_all_study_names(f"sqlite:///{db}")[0], storage=f"sqlite:///{db}"
        ).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }
    assert sorted(records.values(), key=str) == sorted(metrics.values(), key=str)


def test_rebuild_storage_needs_resume(tmp_path: Path, capsys) -> None:
    assert _run(str(_tiny(tmp_path)), "--rebuild-storage", "--out", str(tmp_path / "r")) == 2
    assert "--rebuild-storage: rebuilds a run's storage; use it with --resume" in _one_line(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "--storage: cannot parse 'not a url' as a database URL"),
        ("foo://host/db", "--storage: unsupported database 'foo' in foo://host/db"),
        ("mysql://u@localhost/db", "--storage: no driver for mysql is installed"),
        (
            "postgresql://u:secret@127.0.0.1:1/db",
            "--storage: cannot connect to postgresql://u:***@127.0.0.1:1/db: ",
        ),
        ("sqlite:////no/such/folder/s.db", "--storage: the folder of /no/such/folder/s.db"),
    ],
)
def test_storage_problems_name_the_option_before_anything_is_created(
    tmp_path: Path, capsys, url: str, message: str
) -> None:
    out = tmp_path / "run"
    assert _run(str(_tiny(tmp_path)), "--storage", url, "--out", str(out)) == 2
    err = _one_line(capsys)
    assert message in err
    assert "secret" not in err
    assert not out.exists()


def test_storage_files_are_checked_read_only(tmp_path: Path) -> None:
    check_file(tmp_path / "missing.db", "x")  # not there yet: fine, it will be created
    (tmp_path / "text.db").write_text("hello")
    with pytest.raises(StorageError, match=r"^what: .*text\.db is not an SQLite database; do"):
        check_file(tmp_path / "text.db", "what", "do")
    with pytest.raises(StorageError, match=r"is not an SQLite database"):
        check_url(f"sqlite:///{tmp_path / 'text.db'}")


def test_out_problems_name_the_option(tmp_path: Path, capsys) -> None:
    existing = tmp_path / "a-file"
    existing.write_text("x")
    assert _run(str(_tiny(tmp_path)), "--out", str(existing)) == 2
    assert f"--out: {existing} exists and is not a directory" in _one_line(capsys)
    assert _run(str(_tiny(tmp_path)), "--out", str(existing / "sub")) == 2
    assert f"--out: cannot create {existing / 'sub'}" in _one_line(capsys)


@pytest.fixture
def freeze():
    """``freeze(path)`` makes a folder unwritable even for root (``chattr +i``), undone at
    teardown; skips where the file system or the user cannot do that."""
    frozen: list[Path] = []

    def _freeze(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        frozen.append(path)
        if os.access(path, os.W_OK):
            pytest.skip("an immutable folder is still writable here")

    yield _freeze
    for path in frozen:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_run_directory_is_a_one_line_error(tmp_path: Path, capsys, freeze) -> None:
    study = _tiny(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    freeze(out)
    assert _run(str(study), "--out", str(out)) == 2
    assert f"--out: {out} is not writable" in _one_line(capsys)


def test_a_run_directory_that_turns_unwritable_mid_run_loses_nothing(
    tmp_path: Path, capsys, freeze
) -> None:
    """The trial's files cannot be written: one line naming the file, the trial goes back to
    the queue, and a resume once the folder is writable again finishes every trial."""
    study = _tiny(tmp_path)
    out = tmp_path / "run"
    (out / "trials").mkdir(parents=True)
    freeze(out / "trials")
    assert _run(str(study), "--out", str(out), "--no-stack") == 2
    err = _one_line(capsys)
    assert f"{out / 'trials'}" in err, err
    assert "Operation not permitted" in err, err
    subprocess.run(["chattr", "-i", str(out / "trials")], check=True)
    assert _run("--resume", str(out)) == 0
    assert "2/2 trials complete" in capsys.readouterr().out


# -- a run directory is one study (issue 24, case 2) --------------------------------------


def _studies(run: Path) -> list[str]:
    return optuna.get_all_study_names(f"sqlite:///{run / 'storage.db'}")


def _trial_files(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.glob("trials/*/*")}


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda doc: doc["train"].update(epochs=2), "points.a.train.epochs: 1 -> 2"),
        (lambda doc: doc["grid"].append({"name": "b"}), "grid point 'b' added"),
    ],
    ids=["epochs", "grid entry"],
)
def test_resume_refuses_an_edited_study_json(finished_run: Path, capsys, edit, said) -> None:
    """Before, resume created a second Optuna study in storage.db, re-ran every trial and
    overwrote the trial files; the report showed only the edited study."""
    files, studies = _trial_files(finished_run), _studies(finished_run)
    path = finished_run / "study.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    assert _run("--resume", str(finished_run)) == 2
    err = _one_line(capsys)
    assert f"{path} was edited since the run began ({said})" in err
    assert _studies(finished_run) == studies
    assert _trial_files(finished_run) == files


def test_resume_refuses_an_edited_study_toml(finished_run: Path, capsys) -> None:
    """study.toml and study.json cannot disagree: before, an edited study.toml was kept
    while study.json's settings ran."""
    path = finished_run / "study.toml"
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 3"))
    assert _run("--resume", str(finished_run)) == 2
    assert f"{path} was edited since the run began (points.a.train.epochs: 1 -> 3)" in (
        _one_line(capsys)
    )


def test_resume_keeps_the_overrides_the_run_began_with(tmp_path: Path, capsys) -> None:
    """``--epochs`` is in study.json, not study.toml: the two agree through run.json."""
    out = tmp_path / "run"
    assert _run(str(_tiny(tmp_path)), "--out", str(out), "--epochs", "2", "--seeds", "1") == 0
    assert _run("--resume", str(out)) == 0
    assert "1/1 trials complete" in capsys.readouterr().out
    assert len(_studies(out)) == 1


def test_resume_of_a_run_without_its_record_never_adds_a_study(finished_run: Path, capsys):
    """A run directory from before run.json: an edited study.json is caught by the storage,
    which holds another study."""
    (finished_run / "run.json").unlink()
    path = finished_run / "study.json"
    document = json.loads(path.read_text())
    document["seeds"] = [0, 1, 2]
    path.write_text(json.dumps(document))
    assert _run("--resume", str(finished_run)) == 2
    assert "holds the sweep of another study" in _one_line(capsys)
    assert len(_studies(finished_run)) == 1


def test_fingerprint_is_of_the_parsed_settings() -> None:
    """Spelling does not matter (a study-level value or the entry's own); values do."""
    from reglab.lab.settings.studyfile import parse_study

    common = {"name": "s", "data": {"subset": 100}, "model": {"sizes": [64, 8, 10]}}
    at_top = parse_study({**common, "train": {"epochs": 2}, "grid": [{"name": "a"}]})
    in_entry = parse_study({**common, "grid": [{"name": "a", "train": {"epochs": 2}}]})
    other = parse_study({**common, "train": {"epochs": 3}, "grid": [{"name": "a"}]})
    assert at_top.fingerprint == in_entry.fingerprint != other.fingerprint


# -- rebuild never destroys (issue 24, case 3) --------------------------------------------


def test_rebuild_names_every_unreadable_trial_file_and_changes_nothing(
    finished_run: Path, capsys
) -> None:
    """Before: a JSON error naming no file, after storage.db had been renamed aside; the new
    storage.db held 0 studies."""
    db = finished_run / "storage.db"
    healthy = db.read_bytes()
    bad = sorted(finished_run.glob("trials/*/metrics.json"))
    bad[0].write_text('{"accuracy": 0.5, oops}')
    weights = bad[1].with_name("model.safetensors")
    weights.write_bytes(b"garbage")
    assert _run("--resume", str(finished_run), "--rebuild-storage") == 2
    err = _one_line(capsys)
    assert "--rebuild-storage: 2 trial file(s) cannot be read: " in err
    assert f"{bad[0]}: not valid JSON (Expecting property name" in err
    assert f"{weights}: not a readable safetensors file" in err
    assert "nothing was changed" in err
    assert db.read_bytes() == healthy
    assert sorted(p.name for p in finished_run.iterdir() if p.name.startswith("storage.db")) == [
        "storage.db",
        "storage.db.lock",
    ]


def test_rebuild_skips_unreadable_trials_when_asked(finished_run: Path, capsys) -> None:
    db = finished_run / "storage.db"
    bad = sorted(finished_run.glob("trials/*/metrics.json"))[0]
    bad.write_text("{")
    db.write_bytes(b"not sqlite at all")
    args = ("--resume", str(finished_run), "--rebuild-storage", "--skip-unreadable")
    assert _run(*args) == 0
    out = capsys.readouterr().out
    assert f"skipped (runs again): {bad}: not valid JSON" in out.replace("\n", "")
    assert "rebuilding the storage from 1 finished trial folders" in out
    assert "2/2 trials complete" in out
    assert json.loads(bad.read_text())  # the trial ran again and wrote its files
    assert len(_studies(finished_run)) == 1
    assert [p.name for p in finished_run.glob("storage.db.damaged-*")], "set aside, not lost"
    assert not list(finished_run.glob("storage.db.rebuilding*"))


def test_skip_unreadable_needs_rebuild(finished_run: Path, capsys) -> None:
    assert _run("--resume", str(finished_run), "--skip-unreadable") == 2
    assert "--skip-unreadable: use it with --resume RUN_DIR --rebuild-storage" in (
        _one_line(capsys)
    )
