"""Start ``sotrag serve`` as a real subprocess on a free port, over the tiny random-weight model.

The engine takes 30-60 s to start on a small CPU, so each test module starts ONE server and shares it.
Sampling is configured through the environment exactly as a user would (``SOTRAG_...``): seeded sampling and
skeletons of 3-4 short points (decoded unguided, as by default; when a random model's skeleton has too few points,
the default regex-guided retry writes them) give a well-formed SoT answer even from random weights, and
``*_MIN_TOKENS`` far above every limit makes each point and normal answer run to its token limit (a random
model would otherwise stop at an arbitrary EOS), so a request with a large ``max_tokens`` is long for sure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import TEST_BLOCK_SIZE

STARTUP_TIMEOUT_S = 300.0
MAX_MODEL_LEN = 4096
POINT_MAX_TOKENS = 24
NORMAL_MAX_TOKENS = 48


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before in this test process: servers started back to back
    bind only later, so the system could give two of them the same free port (two vLLM servers once shared one
    port and one log, and the remote tests saw a single server)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "SOTRAG_ENGINE__MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "SOTRAG_ENGINE__MAX_NUM_SEQS": "32",
        "SOTRAG_ENGINE__ENFORCE_EAGER": "true",
        "SOTRAG_ENGINE__KV_CACHE_GIB": "0.5",
        "SOTRAG_ENGINE__EXTRA": f'{{"block_size": {TEST_BLOCK_SIZE}, "seed": 0}}',
        "SOTRAG_SAMPLING__TEMPERATURE": "1.0",
        "SOTRAG_SAMPLING__SEED": "1234",
        "SOTRAG_SAMPLING__SKELETON_MAX_TOKENS": "512",
        "SOTRAG_SAMPLING__POINT_MAX_TOKENS": str(POINT_MAX_TOKENS),
        "SOTRAG_SAMPLING__POINT_MIN_TOKENS": "100000",
        "SOTRAG_SAMPLING__NORMAL_MAX_TOKENS": str(NORMAL_MAX_TOKENS),
        "SOTRAG_SAMPLING__NORMAL_MIN_TOKENS": "100000",
        "SOTRAG_SOT__MIN_POINTS": "3",
        "SOTRAG_SOT__MAX_POINTS": "4",
        "SOTRAG_SOT__MIN_WORDS": "2",
        "SOTRAG_SOT__MAX_WORDS": "4",
    })
    env.pop("SOTRAG_INDEX_DIR", None)
    return env


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (sotrag serve shuts down cleanly), then SIGKILL after a minute."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@contextlib.contextmanager
def run_server(
    model_dir: Path, workdir: Path, *, index_dir: Path | None, extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """``sotrag serve`` in ``workdir``; yields once ``/readyz`` says ready; stops it (SIGTERM, then SIGKILL)."""
    server = spawn_server(model_dir, workdir, index_dir=index_dir, extra_args=extra_args, env=env)
    process = server.process
    try:
        _wait_ready(server)
        yield server
    finally:
        stop_server(process)


def spawn_server(
    model_dir: Path, workdir: Path, *, index_dir: Path | None, extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start ``sotrag serve`` on a free port in ``workdir`` (log in ``server-PORT.log``); returns at once."""
    port = free_port()
    args = [sys.executable, "-m", "sotrag.app.cli", "serve", "--model", str(model_dir), "--port", str(port)]
    args += ["--index", str(index_dir)] if index_dir is not None else ["--no-index"]
    args += list(extra_args)
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, cwd=workdir, env=env or server_env(), stdout=log, stderr=subprocess.STDOUT
        )
    return ServerProcess(f"http://127.0.0.1:{port}", process, log_path)


def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sotrag serve exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        try:
            r = httpx.get(server.url + "/readyz", timeout=5)
            if r.status_code == 200:
                return
            if r.json().get("engine") == "failed":
                raise RuntimeError(f"the engine failed to start: {r.json()}\n{server.log()[-4000:]}")
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"sotrag serve was not ready after {STARTUP_TIMEOUT_S:.0f} s:\n{server.log()[-4000:]}")
