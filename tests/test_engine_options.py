"""Engine options pass through to vLLM: n-gram speculative decoding (prompt lookup), which suits answers that
copy from retrieved passages, runs through the same pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotrag.app.config import SamplingConfig, Settings
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.pipeline import SoTPipeline
from tests.conftest import tiny_engine_config

pytestmark = pytest.mark.engine


async def test_ngram_speculative_decoding_passes_through(tiny_model_dir: Path) -> None:
    spec = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
    config = tiny_engine_config(tiny_model_dir).model_copy(update={"speculative_config": spec})
    engine = await VLLMEngine.create(config)
    try:
        assert engine._llm.vllm_config.speculative_config.method == "ngram"
        sampling = SamplingConfig(normal_max_tokens=32, normal_min_tokens=32)
        result = await SoTPipeline(engine, Settings(sampling=sampling)).run("repeat repeat repeat", mode="normal")
        assert result.stats.tokens == 32
    finally:
        await engine.aclose()
