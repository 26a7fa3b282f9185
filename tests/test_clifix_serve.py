"""serve's host, Ctrl-C in any command, and the router commands' quiet terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from sotrag.retrieval.cli import run_app
from tests.test_clifix_ingest import assert_one_line_error, run_cli


def test_a_host_name_idna_cannot_encode_is_one_line(tmp_path: Path) -> None:
    for host in ("a\udcffb", "a" * 300):
        proc = run_cli("serve", "--host", host, "--no-index", cwd=tmp_path)
        assert_one_line_error(proc, 2, "not a valid host name")


def test_ctrl_c_in_a_command_says_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = typer.Typer(add_completion=False)

    @app.command()
    def slow(name: str) -> None:
        raise KeyboardInterrupt

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setattr("sys.argv", ["sotrag", "slow", "x"])
    with pytest.raises(SystemExit) as exit_:
        run_app(app)
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert err.strip() == "error: interrupted", err
