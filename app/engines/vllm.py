"""vLLM behind the ``Engine`` interface: an in-process ``AsyncLLM`` with prefix caching and delta streaming.

Why ``AsyncLLM`` and not the offline ``LLM.generate``: SoT's whole point is many requests of one answer in
flight at once, each streamed as it decodes, and cancellable. ``AsyncLLM`` gives continuous batching across
concurrent requests, per-request ``abort``, and ``num_cached_tokens`` to show the prefix cache at work. Requests
go in through ``AsyncLLM.add_request`` and are read from its output collectors (what ``AsyncLLM.generate`` does),
so that an answer's points can all be in vLLM before any is read (``generate_group``). Create the engine inside
the event loop that will use it: AsyncLLM binds to that loop.

Every prompt reaches vLLM as token ids (``TokensPrompt``): built by ``chat_ids.encode_chat`` so that only the
chat template makes special tokens, or given by the caller (a point continuing the skeleton's own ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import statistics
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sotrag.app.config import EngineConfig
from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import (
    ChatMessage,
    ChatPrompt,
    EngineBase,
    EngineError,
    EngineHealth,
    EngineLoad,
    GenerationDelta,
    GenerationRequest,
    SamplingOptions,
)
from sotrag.app.engines.json_grammar import compact_json_grammar
from sotrag.app.engines.local_tokenizer import LocalTokenizer
from sotrag.app.engines.model_source import resolve_model

log = logging.getLogger("sotrag.engine.vllm")


class _SchedulerSnapshot:
    """Filled by vLLM's stat-logger hook with its own scheduler and iteration stats after every engine step.

    ITL: each step's median inter-token latency goes into a window of the last ``WINDOW`` steps; ``itl_s``
    is the window's median (one long prefill step does not move it; many do, and that is real load), and
    ``idle_itl_s`` the lowest full-window median seen."""

    WINDOW = 32

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0
        self._itl: deque[float] = deque(maxlen=self.WINDOW)
        self._step_tokens: deque[int] = deque(maxlen=self.WINDOW)
        self.itl_s: float | None = None
        self.idle_itl_s: float | None = None
        self.tokens_per_step: float | None = None

    def record_iteration(self, itls: list[float], tokens: int) -> None:
        if tokens:
            self._step_tokens.append(tokens)
            self.tokens_per_step = sum(self._step_tokens) / len(self._step_tokens)
        if not itls:
            return
        self._itl.append(statistics.median(itls))
        self.itl_s = statistics.median(self._itl)
        if len(self._itl) == self.WINDOW and (self.idle_itl_s is None or self.itl_s < self.idle_itl_s):
            self.idle_itl_s = self.itl_s


def _stat_logger_factory(snapshot: _SchedulerSnapshot) -> Any:
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SchedulerStatsTap(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(
            self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
        ) -> None:
            if scheduler_stats is not None:
                snapshot.running = scheduler_stats.num_running_reqs
                snapshot.waiting = scheduler_stats.num_waiting_reqs
                snapshot.kv_cache_usage = scheduler_stats.kv_cache_usage
            if iteration_stats is not None:  # same attribute names in vLLM 0.24 and 0.32
                tokens = int(iteration_stats.num_generation_tokens) + int(iteration_stats.num_prompt_tokens)
                snapshot.record_iteration(list(iteration_stats.inter_token_latencies_iter), tokens)

        def log_engine_initialized(self) -> None:
            pass

    return SchedulerStatsTap


def engine_kwargs(config: EngineConfig, model_path: str) -> dict[str, Any]:
    """The ``AsyncEngineArgs`` fields for ``config``: the named options, then ``engine.extra`` as given."""
    return {
        "model": model_path,
        "tokenizer": config.tokenizer,
        "dtype": config.dtype,
        "max_model_len": config.max_model_len,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "tensor_parallel_size": config.tensor_parallel_size,
        "pipeline_parallel_size": config.pipeline_parallel_size,
        "data_parallel_size": config.data_parallel_size,
        "distributed_executor_backend": config.distributed_executor_backend,
        "max_num_seqs": config.resolved_max_num_seqs,
        "enable_prefix_caching": config.enable_prefix_caching,
        "speculative_config": config.speculative_config,
        "load_format": config.load_format,
        "enforce_eager": config.enforce_eager,
        "kv_cache_memory_bytes": config.resolved_kv_cache_bytes,
        **({"max_num_batched_tokens": b} if (b := config.resolved_max_num_batched_tokens) else {}),
        **({} if config.enable_chunked_prefill is None else {"enable_chunked_prefill": config.enable_chunked_prefill}),
        "disable_log_stats": False,  # our scheduler-stats tap needs stats
        **config.extra,
    }


def seeds_are_safe(device_type: str, chunked_prefill: bool) -> bool:
    """Whether vLLM can take a per-request ``seed`` without risk (docs/RELIABILITY.md, "Seeded sampling on CPU").

    A seeded request gets its own ``torch.Generator``. When its prompt is prefilled in chunks (long, or sharing
    a step's token budget with other requests), vLLM rewinds that generator after each partial step with
    ``set_offset``, which only CUDA-like generators have: on CPU it raises "CPU Generator does not use offset"
    in the engine core, and the engine dies. So on CPU a seed is safe only with chunked prefill off."""
    return device_type != "cpu" or not chunked_prefill


def _structured_outputs(s: SamplingOptions, params: Any) -> Any:
    if s.regex:
        return params(regex=s.regex)
    if s.json_schema:
        grammar = _compact_json_grammar(s.json_schema)
        return params(grammar=grammar) if grammar is not None else params(json=s.json_schema)
    return None


def _compact_json_grammar(schema: str) -> str | None:
    """The schema as compact JSON's grammar: ``json_grammar.compact_json_grammar``, shared with the OpenAI route,
    which checks a ``response_format`` with it before any stream starts."""
    return compact_json_grammar(schema)


def _stream_interval(interval: int) -> dict[str, Any]:
    """``SamplingParams`` keywords for ``interval`` tokens a delta (none for 1, or where vLLM lacks it)."""
    return {"stream_interval": interval} if interval > 1 and _per_request_stream_interval() else {}


@functools.cache
def _per_request_stream_interval() -> bool:
    """Whether this vLLM takes ``SamplingParams(stream_interval=...)`` (0.32 does). 0.24, the GPU recipe, has
    only the engine argument of that name, for every request, skeleton included: said once, when asked for."""
    from vllm import SamplingParams

    if "stream_interval" in getattr(SamplingParams, "__struct_fields__", ()):
        return True
    log.warning(
        "this vLLM has no per-request stream_interval: sampling.stream_interval is ignored (set the engine "
        "argument instead: SOTRAG_ENGINE__EXTRA='{\"stream_interval\": N}')"
    )
    return False


class VLLMEngine(EngineBase):
    """The production engine. Use ``await VLLMEngine.create(config)``."""

    def __init__(
        self, llm: Any, tokenizer: Any, config: EngineConfig, snapshot: _SchedulerSnapshot, model: str
    ) -> None:
        self._llm = llm
        self._tokenizer = tokenizer
        self._config = config
        self._snapshot = snapshot
        self._model = model
        self._max_model_len = int(llm.model_config.max_model_len)
        self._chat = LocalTokenizer(tokenizer)  # its caches: an answer's requests share their contents
        self._admission = asyncio.Lock()  # one group at a time holds the scheduler
        self.admit_together = config.admit_points_together  # ``generate_group`` may hold an idle scheduler
        vllm_config = getattr(llm, "vllm_config", None)
        self._seeds_safe = vllm_config is None or seeds_are_safe(
            str(vllm_config.device_config.device_type), bool(vllm_config.scheduler_config.enable_chunked_prefill)
        )

    @classmethod
    async def create(cls, config: EngineConfig | None = None) -> VLLMEngine:
        config = config or EngineConfig()
        # Importing vLLM and starting its engine-core process block for tens of seconds: do it in a thread, so
        # the caller's event loop (a server answering /healthz) keeps running. AsyncLLM made outside the loop
        # starts its output handler lazily, on first use, in the loop that uses it.
        return await asyncio.to_thread(cls._create_blocking, config)

    @classmethod
    def _create_blocking(cls, config: EngineConfig) -> VLLMEngine:
        model = config.resolved_model
        model_path = model if config.load_format == "dummy" else resolve_model(model)
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineError(
                f"vLLM is not installed ({exc}); install sotrag[cpu] or sotrag[gpu] (see README)"
            ) from None
        args = AsyncEngineArgs(**engine_kwargs(config, model_path))
        snapshot = _SchedulerSnapshot()
        try:
            llm = AsyncLLM.from_engine_args(args, stat_loggers=[_stat_logger_factory(snapshot)])
        except Exception as exc:
            raise EngineError(f"vLLM could not start model {model}: {type(exc).__name__}: {exc}") from exc
        tokenizer = llm.tokenizer
        if tokenizer is None:
            raise EngineError("the engine has no tokenizer; sotrag needs one for chat templates")
        return cls(llm, tokenizer, config, snapshot, model)

    # -- Engine interface ---------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return self._chat.render_chat(messages, continue_final_message=continue_final_message)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        return self._chat.encode_chat(messages, continue_final_message=continue_final_message)

    def count_tokens(self, text: str) -> int:
        return self._chat.count_tokens(text)

    async def aencode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
    ) -> ChatPrompt:
        return await self._chat.aencode_chat(messages, continue_final_message=continue_final_message)

    async def acount_tokens(self, text: str) -> int:
        return await self._chat.acount_tokens(text)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        collector, prompt_tokens = await self._submit(request)
        deltas = self._stream(collector, request.request_id, prompt_tokens)
        try:
            async for delta in deltas:
                yield delta
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]  # closed early: aborts the request now, not at GC

    async def generate_group(self, requests: Sequence[GenerationRequest]) -> list[AsyncIterator[GenerationDelta]]:
        """Every request of the group in vLLM before its core schedules any of them (where it is idle).

        Why: vLLM takes requests in between engine steps and starts a step as soon as one request is there. An
        answer's points, sent one after the other, would be prefilled over two or three steps, and the last
        one starts decoding a step or more after the first (docs/BENCHMARKS.md, the hand-over). So, when no
        other request is in the engine, its scheduler is paused (vLLM's "keep" pause, caches kept) while the
        group goes in, and resumed right after: one step prefills them all (a request of another answer that
        arrives meanwhile waits those few milliseconds). Under load the engine is stepping anyway and takes the
        group in at its next step boundary, so nothing is paused."""
        hold = self.admit_together and len(requests) > 1 and self.num_unfinished_requests() == 0
        submitted: list[tuple[Any, GenerationRequest, int]] = []
        async with self._admission if hold else contextlib.nullcontext():  # one hold at a time; the rest go in
            pause = self._send_pause() if hold else None
            try:
                if pause is not None:
                    await asyncio.sleep(0)  # the pause goes out first; its reply is awaited after the requests
                for request in requests:
                    collector, prompt_tokens = await self._submit(request)
                    submitted.append((collector, request, prompt_tokens))
            except BaseException:
                for _, done, _ in submitted:
                    await self.abort(done.request_id)
                raise
            finally:
                if pause is not None:
                    await asyncio.shield(self._release(pause))
        return [_Submitted(self, c, r.request_id, n) for c, r, n in submitted]

    def _send_pause(self) -> asyncio.Future[None] | None:
        """Pause vLLM's scheduler, keeping its requests and caches, without waiting for its reply: the requests go
        in while the reply is on its way (vLLM takes a client's messages in the order they were sent). None
        where this vLLM has no such pause (groups then go in one by one)."""
        pause = getattr(getattr(self._llm, "engine_core", None), "pause_scheduler_async", None)
        if pause is None:
            self.admit_together = False
            return None
        return asyncio.ensure_future(pause(mode="keep", clear_cache=False))

    async def _release(self, pause: asyncio.Future[None]) -> None:
        """Resume the scheduler once the pause has been answered (so the resume can never reach the core before
        it), cancelled or not. A vLLM that refuses the pause is not asked again."""
        try:
            await pause
        except Exception as exc:  # an older or newer vLLM: serve without the hold
            log.warning("vLLM refused the scheduler pause (%s: %s); points go in one by one", type(exc).__name__, exc)
            self.admit_together = False
        await self._llm.engine_core.resume_scheduler_async()

    async def _submit(self, request: GenerationRequest) -> tuple[Any, int]:
        """Hand ``request`` to vLLM: its output collector, and its prompt's length in tokens."""
        from vllm.inputs import TokensPrompt

        # Ids built by encode_chat (or continued from an earlier request's) go in exactly as they are; bare
        # text is plain text: a special-token marker written in it never becomes a special token.
        if request.prompt_token_ids is not None:
            prompt_ids = list(request.prompt_token_ids)
        else:
            prompt_ids = chat_ids.encode_plain(self._tokenizer, request.prompt)
        room = self._max_model_len - len(prompt_ids)
        if room < 1:
            raise EngineError(
                f"the prompt is {len(prompt_ids)} tokens, over the model's context of {self._max_model_len} tokens"
            )
        params = self._sampling_params(request.sampling, room)
        collector = await self._llm.add_request(request.request_id, TokensPrompt(prompt_token_ids=prompt_ids), params)
        return collector, len(prompt_ids)

    def _sampling_params(self, s: SamplingOptions, room: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        return SamplingParams(
            n=1,
            max_tokens=min(s.max_tokens, room),
            min_tokens=min(s.min_tokens, room),
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k if s.top_k > 0 else -1,
            seed=self._seed(s),
            stop=list(s.stop) or None,
            ignore_eos=s.ignore_eos,
            allowed_token_ids=list(s.allowed_token_ids) if s.allowed_token_ids else None,
            structured_outputs=_structured_outputs(s, StructuredOutputsParams),
            output_kind=RequestOutputKind.DELTA,
            **_stream_interval(s.stream_interval),
        )

    async def _stream(self, collector: Any, request_id: str, prompt_tokens: int) -> AsyncIterator[GenerationDelta]:
        """The deltas of a submitted request, read from its vLLM output collector the way ``AsyncLLM.generate``
        reads them; closed early (client gone, task cancelled), the request is aborted at once."""
        finished = False
        try:
            while not finished:
                out = collector.get_nowait() or await collector.get()  # no task switch while outputs wait
                completion = out.outputs[0]
                finished = completion.finish_reason is not None or bool(out.finished)
                yield GenerationDelta(
                    text=completion.text,
                    new_tokens=len(completion.token_ids),
                    prompt_tokens=prompt_tokens,
                    cached_prompt_tokens=int(out.num_cached_tokens or 0),
                    finish_reason=completion.finish_reason,
                    token_ids=tuple(t for t in completion.token_ids if t not in self._chat.special_ids),
                )
        finally:
            collector.close()
            if not finished:  # closed early (client gone, task cancelled): free the sequence now
                await self.abort(request_id)

    def _seed(self, s: SamplingOptions) -> int | None:
        """The request's seed, or None where a seed could kill the engine (``seeds_are_safe``): such a request is
        sampled from the engine's own generator instead (seeded once by ``engine.extra``'s ``seed``)."""
        if s.seed is None or s.temperature == 0 or self._seeds_safe:
            return s.seed
        _warn_seed_dropped()
        return None

    async def abort(self, request_id: str) -> None:
        await self._llm.abort(request_id)

    def num_unfinished_requests(self) -> int:
        """Requests vLLM still holds (running or waiting); 0 after every answer is done or cancelled."""
        # vLLM 0.24 (the GPU recipe) has no AsyncLLM.get_num_unfinished_requests; its output processor does.
        return int(self._llm.output_processor.get_num_unfinished_requests())

    def health(self) -> EngineHealth:
        """Dead when vLLM's engine-core process has stopped (its monitor thread marks it) or its output loop ended."""
        llm = self._llm
        if isinstance(llm, _Closed):
            return EngineHealth(alive=False, detail="the engine is closed")
        if bool(getattr(llm, "errored", False)):
            return EngineHealth(alive=False, detail="the engine process stopped unexpectedly")
        return EngineHealth(alive=True)

    def load(self) -> EngineLoad:
        snap = self._snapshot
        return EngineLoad(
            running=snap.running,
            waiting=snap.waiting,
            max_num_seqs=self._config.resolved_max_num_seqs,
            kv_cache_usage=snap.kv_cache_usage,
            itl_s=snap.itl_s,
            idle_itl_s=snap.idle_itl_s,
            tokens_per_step=snap.tokens_per_step,
        )

    async def aclose(self) -> None:
        self._chat.close()
        llm, self._llm = self._llm, _Closed()
        llm.shutdown()
        # AsyncLLM.__del__ shuts down a second time, and if that happens during interpreter teardown it
        # prints a traceback (its module globals are gone). It is already shut down: make the second a no-op.
        llm.shutdown = lambda *args, **kwargs: None


class _Submitted:
    """A request already in vLLM (``generate_group``), read as a stream of deltas. Closed before it was read, it
    is aborted too (an async generator closed before its first step runs none of its code)."""

    def __init__(self, engine: VLLMEngine, collector: Any, request_id: str, prompt_tokens: int) -> None:
        self._engine, self._collector, self._request_id = engine, collector, request_id
        self._deltas = engine._stream(collector, request_id, prompt_tokens)
        self._started = False

    def __aiter__(self) -> _Submitted:
        return self

    async def __anext__(self) -> GenerationDelta:
        self._started = True
        return await anext(self._deltas)

    async def aclose(self) -> None:
        if not self._started:
            self._started = True
            self._collector.close()
            await self._engine.abort(self._request_id)
        await self._deltas.aclose()  # type: ignore[attr-defined]


@functools.cache  # once a process
def _warn_seed_dropped() -> None:
    log.warning(
        "per-request sampling seeds are ignored: on a CPU with chunked prefill vLLM's engine would crash on them "
        "(set SOTRAG_ENGINE__ENABLE_CHUNKED_PREFILL=false to keep seeds; see docs/RELIABILITY.md)"
    )


class _Closed:
    def __getattr__(self, name: str) -> Any:
        raise EngineError("the engine is closed")
