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


def test_router_commands_keep_the_libraries_quiet(tmp_path: Path) -> None:
    """A fresh cache builds the router's encoder: transformers' "Loading weights" bar and onnxruntime's advice
    stayed on stderr; only with -v now."""
    labels = Path(__file__).parent / "data" / "router_tiny.csv"
    proc = run_cli("eval-router", str(labels), "--json", cwd=tmp_path, env={"SOTRAG_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and '"accuracy"' in proc.stdout


def test_serve_with_an_unreachable_engine_url_says_so_once(tmp_path: Path) -> None:
    """No vLLM import for a remote engine (its nanobind leak report filled the terminal at exit), the port the
    system chose for --port 0, and the failure said once."""
    proc = run_cli(
        "serve", "--engine-url", "http://127.0.0.1:9/v1", "--no-index", "--port", "0", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert sum("cannot reach the vLLM server" in line for line in lines) == 1, proc.stderr
    assert "nanobind" not in proc.stderr and "Traceback" not in proc.stderr
    assert "http://127.0.0.1:0 " not in proc.stderr and "http://127.0.0.1:" in proc.stderr, proc.stderr


def test_preload_imports_no_vllm_for_a_remote_engine() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from sotrag.app.config import Settings; from sotrag.app.cli.serve import _preload; "
        "_preload(Settings.model_validate({'engine': {'urls': ['http://127.0.0.1:9/v1']}}), False); "
        "print('vllm' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "False", proc.stderr


def test_an_api_key_no_client_could_send_is_refused(tmp_path: Path) -> None:
    for key in ("q\udcff", "clé", "a\tb"):
        proc = run_cli("serve", "--api-key", key, "--no-index", cwd=tmp_path)
        assert proc.returncode == 2 and "not printable ASCII" in proc.stderr.splitlines()[-1], proc.stderr
