"""Every secret passes one check, from every source: a key no HTTP client can send, a short or placeholder key, or
an admin key equal to the API key is refused (one line, exit 2 in ``sotrag serve``), and ``require_auth`` sees
the keys of the command line. The allow-list refuses a wildcard over a public suffix, and its errors name the
flag a user can type."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from sotrag.app.config import MIN_KEY_CHARS, EngineConfig, ServerConfig, Settings, secret_problem
from sotrag.app.serving.app import create_app

GOOD = "k3y-0123456789abcdef"
GOOD_ADMIN = "adm1n-0123456789abcdef"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("SOTRAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


BAD_KEYS = [
    "abc\x01def-0123456789",  # a control character
    "clé-secrète-0123456789",  # not ASCII
    "line1\nline2-0123456789",
    "a",
    "changeme",
    "None",
    "null",
    "password",
    "your-api-key-here",
    "CHANGE_ME_0123456789",
    "aaaaaaaaaaaaaaaaaaaa",
    "x" * (MIN_KEY_CHARS - 2) + "yz",  # long enough, too simple
    "abcdef0123456",  # too short
]


@pytest.mark.parametrize("value", BAD_KEYS)
@pytest.mark.parametrize("name", ["SOTRAG_API_KEY", "SOTRAG_ADMIN_API_KEY", "SOTRAG_ENGINE__API_KEY"])
def test_a_bad_key_from_the_environment_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                   name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=r"api_key is "):
        Settings()


def test_a_bad_key_from_dotenv_or_code_is_refused(clean_env: Path) -> None:
    (clean_env / ".env").write_text('SOTRAG_API_KEY="line1\\nline2-0123456789"\n')
    with pytest.raises(ValidationError, match="not printable ASCII"):
        Settings()
    (clean_env / ".env").unlink()
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(admin_api_key=SecretStr("changeme"))
    with pytest.raises(ValidationError, match=r"engine\.api_key is not printable ASCII"):
        EngineConfig(api_key="clé-0123456789abcdef")


def test_good_keys_pass_and_the_check_is_one_function(clean_env: Path) -> None:
    for key in (GOOD, GOOD_ADMIN, "0f3a9c1b7e5d2f4a6b8c0d1e2f3a4b5c", "Zm9vYmFyYmF6cXV4MTIzNDU2"):
        assert secret_problem(key) is None, key
    s = Settings(api_key=SecretStr(GOOD), admin_api_key=SecretStr(GOOD_ADMIN),
                 engine=EngineConfig(api_key=GOOD, urls=["http://127.0.0.1:9/v1"]))
    assert s.api_key is not None and s.engine.api_key == GOOD


def test_the_admin_key_must_differ_from_the_api_key(clean_env: Path) -> None:
    with pytest.raises(ValidationError, match="admin_api_key is the same as api_key"):
        Settings(api_key=SecretStr(GOOD), admin_api_key=SecretStr(GOOD))


def test_create_app_checks_a_copied_key_like_settings() -> None:
    """``model_copy(update=...)`` skips validation: create_app runs the same check."""
    weak = Settings().model_copy(update={"api_key": SecretStr("changeme")})
    with pytest.raises(ValueError, match="placeholder"):
        create_app(weak, ui=False)


def test_allowed_hosts_refuse_a_wildcard_over_a_public_suffix() -> None:
    for bad in (["*.com"], ["*.co.uk"], ["*.io"], ["."], ["*.COM."]):
        with pytest.raises(ValidationError):
            ServerConfig(allowed_hosts=bad)
    ok = ServerConfig(allowed_hosts=["*.example.com", "*.internal", "*.svc.cluster.local", "Host.Example.", "*"])
    assert ok.allowed_hosts == ["*.example.com", "*.internal", "*.svc.cluster.local", "host.example", "*"]


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOTRAG_")}
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", "serve", "--model", str(tmp_path / "none"), "--no-index",
         "--port", "0", *args],
        capture_output=True, text=True, timeout=180, env={**base, **(env or {})}, cwd=tmp_path,
    )


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], lines


def test_serve_refuses_bad_keys_from_every_source_in_one_line(tmp_path: Path) -> None:
    """The model folder does not exist: getting past the key checks would fail differently (exit 1)."""
    one_error_line(serve(tmp_path, "--host", "0.0.0.0", env={"SOTRAG_API_KEY": "a"}), "SOTRAG_API_KEY", "shorter")
    one_error_line(serve(tmp_path, env={"SOTRAG_API_KEY": "None"}), "placeholder")
    one_error_line(serve(tmp_path, env={"SOTRAG_ADMIN_API_KEY": "clé-secrète-0123456789"}), "SOTRAG_ADMIN_API_KEY")
    one_error_line(serve(tmp_path, env={"SOTRAG_ENGINE__API_KEY": "clé", "SOTRAG_ENGINE__URLS": '["http://127.0.0.1:9/v1"]'}),
                   "SOTRAG_ENGINE__API_KEY", "not printable ASCII")
    (tmp_path / "weak").write_text("changeme\n")
    one_error_line(serve(tmp_path, "--api-key-file", str(tmp_path / "weak")), "--api-key-file", "placeholder")
    (tmp_path / "key").write_text(GOOD + "\n")
    one_error_line(serve(tmp_path, "--api-key-file", str(tmp_path / "key"), env={"SOTRAG_ADMIN_API_KEY": GOOD}),
                   "the same as api_key")


def test_require_auth_counts_the_key_from_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(GOOD + "\n")
    auth = {"SOTRAG_SERVER__REQUIRE_AUTH": "true"}
    with_file = serve(tmp_path, "--api-key-file", str(tmp_path / "key"), env=auth)
    assert with_file.returncode == 1 and "does not exist" in with_file.stderr, with_file.stderr  # past the checks
    one_error_line(serve(tmp_path, env=auth), "require_auth is on")


def test_allowed_host_errors_name_the_flag_and_refuse_public_wildcards(tmp_path: Path) -> None:
    proc = serve(tmp_path, "--allowed-host", "evil.example:80")
    one_error_line(proc, "--allowed-host:")
    assert "--allowed-hosts" not in proc.stderr
    one_error_line(serve(tmp_path, "--allowed-host", "*.com"), "--allowed-host:", "public suffix")
    one_error_line(serve(tmp_path, env={"SOTRAG_SERVER__ALLOWED_HOSTS": '["*.com"]'}), "SOTRAG_SERVER__ALLOWED_HOSTS")
