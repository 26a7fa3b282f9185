"""Shared fixtures: one tiny random-weight model and ONE real vLLM engine for the whole test session, and the
shared test doubles of ``tests/fakes.py`` (a scripted engine, a list retriever, the sampling settings).

An AsyncLLM takes ~30 s to start on this CPU, so every engine test shares the session engine (and the
session event loop it is bound to: see pyproject's asyncio settings). Tests of the pipeline's own logic use
``scripted_engine`` instead: no model, and a failure points at the pipeline."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fakes import SAMPLING, ListRetriever, ScriptedEngine

if TYPE_CHECKING:
    from sotrag.app.config import EngineConfig, SamplingConfig
    from sotrag.app.engines.vllm import VLLMEngine

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# CPU attention needs KV blocks in multiples of 32; small blocks make prefix-cache hits visible on short prompts.
TEST_BLOCK_SIZE = 32


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def tiny_engine_config(model_dir: Path) -> EngineConfig:
    from sotrag.app.config import EngineConfig

    return EngineConfig(
        model=str(model_dir),
        max_model_len=2048,
        max_num_seqs=32,
        enforce_eager=True,
        kv_cache_gib=0.5,
        extra={"block_size": TEST_BLOCK_SIZE, "seed": 0},
    )


@pytest.fixture(scope="session")
async def engine(tiny_model_dir: Path) -> AsyncIterator[VLLMEngine]:
    from sotrag.app.engines.vllm import VLLMEngine

    eng = await VLLMEngine.create(tiny_engine_config(tiny_model_dir))
    yield eng
    await eng.aclose()


@pytest.fixture
def scripted_engine() -> ScriptedEngine:
    """A fresh scripted engine with the default script (a nine-line skeleton, one sentence per point, a short
    normal answer). Tests that need another script build ``ScriptedEngine(script)`` themselves."""
    return ScriptedEngine()


@pytest.fixture
def list_retriever() -> ListRetriever:
    """An empty ``ListRetriever``: set ``.passages`` to what retrieval should find."""
    return ListRetriever()


@pytest.fixture
def sampling() -> SamplingConfig:
    """The sampling settings the engine tests share (``tests.fakes.SAMPLING``)."""
    return SAMPLING


# --- replay engine (issue 22): the tiny model writing recorded real answers ------------------------------------
# A second session engine, only for the replay tests: the replay logits processor is an engine argument, so it
# cannot be switched on per request of the engine above.


@pytest.fixture(scope="session")
def replay_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    from tests.replay_support import write_script

    path = tmp_path_factory.mktemp("replay") / "script.jsonl"
    return path, write_script(path)


@pytest.fixture(scope="session")
async def replay_engine(tiny_model_dir: Path, replay_rows: tuple[Path, dict[str, dict]]) -> AsyncIterator[object]:
    from sotrag.app.engines.replay import replay_engine_extra
    from sotrag.app.engines.vllm import VLLMEngine

    cfg = tiny_engine_config(tiny_model_dir)
    replay = replay_engine_extra(replay_rows[0], model=tiny_model_dir)  # a bad script fails here, named
    cfg = cfg.model_copy(update={"kv_cache_gib": 0.25, "extra": {**cfg.extra, **replay}})
    eng = await VLLMEngine.create(cfg)
    yield eng
    await eng.aclose()
