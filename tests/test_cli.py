"""The ``sotrag`` command as a user runs it: a subprocess, its exit code, its stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def tiny_env() -> dict[str, str]:
    return {
        "SOTRAG_ENGINE__ENFORCE_EAGER": "true",
        "SOTRAG_ENGINE__KV_CACHE_GIB": "0.5",
        "SOTRAG_ENGINE__MAX_MODEL_LEN": "2048",
        "SOTRAG_ENGINE__EXTRA": json.dumps({"block_size": 32}),
        "SOTRAG_SAMPLING__TEMPERATURE": "1.0",
        "SOTRAG_SAMPLING__SEED": "3",
        "SOTRAG_SAMPLING__SKELETON_MAX_TOKENS": "512",
        "SOTRAG_SAMPLING__POINT_MAX_TOKENS": "16",
        "SOTRAG_SOT__MIN_POINTS": "3",
        "SOTRAG_SOT__MAX_POINTS": "3",
        "SOTRAG_SOT__MAX_WORDS": "4",
    }


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors_are_one_line_with_exit_2() -> None:
    """A wrong option, value, command or a missing argument: one line naming it and the help to read, not a
    framed multi-line box."""
    cases = [
        (("ask", "hi", "--mode", "fast"), "'--mode'", "sotrag ask --help"),
        (("ask", "hi", "--no-such-flag"), "--no-such-flag", "sotrag ask --help"),
        (("search",), "'query'", "sotrag search --help"),
        (("no-such-command",), "no-such-command", "sotrag --help"),
    ]
    for args, needle, hint in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stdout, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert needle in lines[0] and hint in lines[0], (args, lines[0])
    assert run_cli("--version").returncode == 0


def test_empty_question() -> None:
    assert_one_line_error(run_cli("ask", "   "), 2, "the question is empty")
    assert_one_line_error(run_cli("ask", "\u200b\u00a0"), 2, "the question is empty (no visible characters)")


def test_missing_model_folder_fails_fast_with_a_hint() -> None:
    proc = run_cli("ask", "hello", "--model", "/no/such/model", timeout=60)
    assert_one_line_error(proc, 1, "--model PATH")


def test_uncached_hub_model_offline_fails_with_a_hint() -> None:
    proc = run_cli("ask", "hello", "--model", "nobody/not-a-model", timeout=60)
    assert_one_line_error(proc, 1, "--model PATH")


def test_missing_index_fails_before_the_engine_starts(tiny_model_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("ask", "hello", "--model", str(tiny_model_dir), "--index", str(tmp_path / "none"), env=tiny_env())
    assert_one_line_error(proc, 2, "no index at")


def test_question_longer_than_the_context(tiny_model_dir: Path) -> None:
    proc = run_cli("ask", "sleep " * 3000, "--model", str(tiny_model_dir), env=tiny_env())
    assert_one_line_error(proc, 2, "context of 2048 tokens")


@pytest.mark.engine
def test_ask_json_contract(tiny_model_dir: Path) -> None:
    proc = run_cli(  # the SoT contract (the default mode, auto, would ask the router)
        "ask", "How do I sleep better?", "--mode", "sot", "--model", str(tiny_model_dir), "--json", env=tiny_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert out["mode"] == "sot" and out["fallback_reason"] is None
    assert [p["index"] for p in out["points"]] == [1, 2, 3]
    for point in out["points"]:
        assert {"index", "title", "text", "tokens", "start_s", "first_token_s", "end_s"} <= point.keys()
        assert 0 <= point["start_s"] <= point["first_token_s"] <= point["end_s"] <= out["stats"]["total_s"]
    stats = out["stats"]
    assert {
        "ttft_s",
        "skeleton_s",
        "expansion_s",
        "total_s",
        "tokens",
        "tokens_per_s",
        "cached_prompt_tokens",
    } <= stats.keys()
    assert set(stats["cached_prompt_tokens"]) == {"skeleton", "points", "normal"}
    assert out["answer"].startswith("1. ")
