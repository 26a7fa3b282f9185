"""A real vLLM CPU server (chunked prefill on, its default) behind the remote engine: a client's seed on a long
prompt used to reach it and kill its worker ("CPU Generator does not use offset"), so every later request of every
client failed. The engine now leaves such a seed out (``engine.remote_seeds`` off), and the server lives on."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sotrag.app.config import EngineConfig
from sotrag.app.engines.base import GenerationRequest, SamplingOptions
from sotrag.app.engines.remote import RemoteEngine
from tests.vllm_servers import run_vllm_servers

pytestmark = pytest.mark.engine


async def test_a_seeded_long_prompt_does_not_kill_a_cpu_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with run_vllm_servers(tiny_model_dir, tmp_path_factory.mktemp("vllm-seed"), count=1) as (server,):
        engine = await RemoteEngine.create(EngineConfig(urls=[server.url], model=str(tiny_model_dir)))
        try:
            for n, words in enumerate((600, 3000, 5)):  # long prompts are prefilled in chunks
                sampling = SamplingOptions(max_tokens=8, temperature=1.0, seed=7)
                request = GenerationRequest(request_id=f"seed-{n}", prompt="roses " * words, sampling=sampling)
                deltas = [d async for d in engine.generate(request)]
                assert deltas and deltas[-1].finished
        finally:
            await engine.aclose()
        assert httpx.get(f"{server.root}/health", timeout=10).status_code == 200
        assert "does not use offset" not in server.log()
