"""The CLI turns unexpected exceptions into one line (exit 1); --debug re-raises."""

from __future__ import annotations

import pytest

from reglab.cli import main


def test_cli_reports_an_internal_error_in_one_line(monkeypatch, capsys) -> None:
    from reglab.cli import data as data_cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(data_cli, "run", broken)
    assert main(["data", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error (RuntimeError: boom)" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "data", "list"])


def test_a_closed_pipe_ends_the_cli_quietly() -> None:
    # `reglab studies | head -1`: the reader is gone before the listing is written
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "reglab", "studies", "--long"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the interpreter has even imported reglab
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert err == b""
