"""A bad setting from the environment or ``.env``: one line naming the variable (or ``.env``), exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_clifix_ingest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SOTRAG_PASSAGES_K": "abc"}, "invalid setting SOTRAG_PASSAGES_K:"),
        ({"SOTRAG_TOP_K": "abc"}, "invalid setting SOTRAG_TOP_K:"),
        ({"SOTRAG_ENGINE__URLS": "notjson"}, "invalid setting SOTRAG_ENGINE__URLS: not valid JSON"),
        ({"SOTRAG_SOT__MAX_POINTS": "0"}, "invalid setting SOTRAG_SOT__MAX_POINTS:"),
    ],
)
def test_a_bad_environment_variable_is_named(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    assert_one_line_error(run_cli("serve", cwd=tmp_path, env=env), 2, needle)


def test_a_bad_dotenv_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SOTRAG_ENGINE__URLS=notjson\n")
    assert_one_line_error(run_cli("serve", cwd=tmp_path), 2, "SOTRAG_ENGINE__URLS in .env")
    (tmp_path / ".env").write_bytes(b"SOTRAG_SOT__MAX_POINTS=\xff\n")
    assert_one_line_error(run_cli("ask", "hi", cwd=tmp_path), 2, ".env: not UTF-8")


def test_the_retrieval_commands_name_a_bad_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"SOTRAG_X=\xff\n")
    assert_one_line_error(run_cli("search", "cats", cwd=tmp_path), 1, ".env: not UTF-8")
    (tmp_path / ".env").write_text("SOTRAG_RETRIEVAL=notjson\n")
    assert_one_line_error(run_cli("search", "cats", cwd=tmp_path), 1, "SOTRAG_RETRIEVAL in .env: not valid JSON")
