"""A sampling seed never kills the engine (issue 23, item 2).

On CPU, vLLM rewinds a seeded request's generator after every partial (chunked) prefill step with
``set_offset``, which CPU generators lack: the engine core died with "CPU Generator does not use offset" as
soon as a seeded, sampled request's prompt was split over steps (long prompts, or several at once sharing a
step's token budget: retrieval-sized prompts). ``VLLMEngine`` now leaves the seed out where it is unsafe.
"""

from __future__ import annotations

import asyncio

import pytest

from sotrag.app.engines.base import GenerationRequest, SamplingOptions
from sotrag.app.engines.vllm import VLLMEngine, seeds_are_safe

WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog",
    "keep", "a", "regular", "schedule", "avoid", "caffeine", "late",
]


def test_seeds_are_unsafe_only_on_cpu_with_chunked_prefill() -> None:
    assert not seeds_are_safe("cpu", chunked_prefill=True)
    assert seeds_are_safe("cpu", chunked_prefill=False)
    assert seeds_are_safe("cuda", chunked_prefill=True)


@pytest.mark.parametrize(
    ("safe", "temperature", "seed", "sent"),
    [(True, 1.0, 7, 7), (False, 1.0, 7, None), (False, 0.0, 7, 7), (False, 1.0, None, None)],
)
def test_the_seed_is_dropped_only_where_it_could_crash(
    safe: bool, temperature: float, seed: int | None, sent: int | None
) -> None:
    engine = VLLMEngine.__new__(VLLMEngine)
    engine._seeds_safe = safe
    assert engine._seed(SamplingOptions(temperature=temperature, seed=seed)) == sent


@pytest.mark.engine
async def test_concurrent_seeded_long_prompts_do_not_kill_the_engine(engine: VLLMEngine) -> None:
    """Four seeded, sampled ~1400-token prompts at once: more than one engine step's token budget (2048 on
    this CPU), so some prompts are prefilled in chunks; before the fix the engine died on the first one."""
    config = engine._llm.vllm_config.scheduler_config
    assert config.enable_chunked_prefill and config.max_num_batched_tokens < 4 * 1400  # the case that crashed

    async def one(i: int) -> int:
        text = " ".join(WORDS[(i + 7 * j) % len(WORDS)] for j in range(1400)) + f" {i}"
        sampling = SamplingOptions(max_tokens=4, temperature=1.0, seed=1234, ignore_eos=True)
        request = GenerationRequest(f"seeded-{i}", text, sampling)
        tokens = 0
        async for delta in engine.generate(request):
            tokens += delta.new_tokens
        return tokens

    assert await asyncio.gather(*(one(i) for i in range(4))) == [4, 4, 4, 4]
    assert engine.health().alive
