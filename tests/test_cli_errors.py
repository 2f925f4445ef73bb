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
