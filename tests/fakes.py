"""The test doubles every test (and the CPU benchmarks) share: a scripted engine, a list retriever, and the
sampling settings the real-engine tests start from.

Why one module: pure pipeline logic (event order, fallback, retries, numbering, cancellation of point tasks,
stats assembly) does not need a model, and a double written once is one behaviour to trust rather than three.
``ScriptedEngine`` is a unit-test double, never a default: the package never imports ``tests`` (checked by
tests/test_fakes.py); benchmarks may, with the checkout on their path. What needs the real vLLM engine (token ids it
samples, the prefix cache, aborting inside vLLM, the servers) stays on the ``engine`` fixture in conftest.

A scripted engine is "model-free but honest": prompts go through ``chat_ids.encode_chat_with`` (the real
content-as-plain-text encoding) over a word tokenizer, so a point prompt really can continue the skeleton
request's ids; a request stops at ``max_tokens`` with ``"length"`` as vLLM would; closing a stream early records
an abort, as the Engine contract asks. What it does NOT do: apply ``stop`` strings, ``regex`` or sampling (the
script is what streams), or cache prefixes (``cached_prompt_tokens`` is always 0).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from sotrag.app.config import SamplingConfig
from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import (
    ChatPrompt,
    EngineBase,
    EngineError,
    EngineHealth,
    EngineLoad,
    GenerationDelta,
    GenerationRequest,
)
from sotrag.prompts.messages import ChatMessage
from sotrag.retrieval.types import Passage

# -- shared settings ---------------------------------------------------------------------------------------

# What the real-engine tests share: sampled (the random model must not repeat one skeleton line: duplicates are
# dropped by the parser), seeded (the same gibberish every run), room for a guided skeleton. Each test module sets
# its own answer lengths with ``sampling(point_max_tokens=..., ...)``.
SAMPLING = SamplingConfig(temperature=1.0, seed=1234, skeleton_max_tokens=512)


def sampling(**changes: Any) -> SamplingConfig:
    """``SAMPLING`` with some fields changed (validated, as ``SamplingConfig`` would be built)."""
    return SamplingConfig.model_validate({**SAMPLING.model_dump(), **changes})


# -- the scripted engine -----------------------------------------------------------------------------------


class Pieces(tuple[str, ...]):
    """A script's answer given delta by delta: each piece is streamed as one delta of one token, as written."""

    __slots__ = ()


Reply = str | Pieces
# A script: one reply for every request; a mapping from stage ("skeleton", "skeleton-guided", "point", "normal",
# or a full stage such as "point2") to a reply or to a list of replies taken one per request of that stage (the
# last one repeats); or a function of the request.
Script = Reply | Mapping[str, Reply | Sequence[Reply]] | Callable[[GenerationRequest], Reply]

_TOKEN = re.compile(r"\s*\S+|\s+")
_TEMPLATE_MARKER = re.compile(r"<\|[a-z]+\|>")


def stage_of(request_id: str) -> str:
    """The stage a pipeline request id names: "sotrag-<answer id>-point2" -> "point2"; other ids are returned
    whole."""
    parts = request_id.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "sotrag" else request_id


def default_skeleton(points: int = 9) -> str:
    """A numbered skeleton of ``points`` distinct three-word lines (the pipeline stops reading at max_points)."""
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    return "".join(f"{i}. Point number {words[i - 1]}\n" for i in range(1, points + 1))


DEFAULT_SCRIPT: Mapping[str, str] = {
    "skeleton": default_skeleton(),
    "point": " is expanded in one short sentence.",
    "normal": "A plain answer in a few words.",
}


class ScriptedEngine(EngineBase):
    """An ``Engine`` that streams scripted text instead of sampling a model (a unit-test double). It inherits
    ``EngineBase``, as a real engine would, and overrides what it knows: its health, its unfinished requests.

    ``script`` picks each request's reply (see ``Script``). A text reply is cut into word tokens (a word with the
    white space before it) and streamed like vLLM: the first token alone, then ``sampling.stream_interval`` tokens
    a delta, at most ``sampling.max_tokens`` tokens (then ``finish_reason="length"``, else ``finish``).
    ``delay_s`` (seconds, or a function of the request) is slept before each delta, so points overlap, and
    cancellation has something to cancel; with no delay every ``yield_every`` deltas still yield to the loop.

    Records: ``requests`` (every ``GenerationRequest``, in the order sent), ``sent_at`` (request id, perf_counter
    at the send), ``ended_at`` (request id -> perf_counter at its last delta), ``streamed`` (request id -> the
    text it streamed, once its stream has ended), ``aborted`` (request ids closed before their last delta or
    aborted by ``abort``, in order).
    ``num_unfinished_requests()`` counts streams open now. ``load()`` reports them as running unless
    ``load_snapshot`` is set. ``tokenizer`` (a Hugging Face tokenizer) makes prompts with its chat template and
    ids (as ``VLLMEngine``; ``content_cache`` as its ``PlainEncoder``), else a small built-in template over word
    tokens is used; ``prompt_ids=False`` leaves prompts as text without ids (nothing to continue): the cheapest
    stand-in, for timing the pipeline's own work.
    """

    def __init__(
        self,
        script: Script = DEFAULT_SCRIPT,
        *,
        delay_s: float | Callable[[GenerationRequest], float] = 0.0,
        yield_every: int = 1,
        finish: str = "stop",
        max_model_len: int = 8192,
        max_num_seqs: int = 32,
        model_name: str = "scripted",
        tokenizer: Any = None,
        content_cache: bool = True,
        prompt_ids: bool = True,
    ) -> None:
        self.script = script
        self.delay_s = delay_s
        self.yield_every = max(1, yield_every)
        self.finish = finish
        self._max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self._model_name = model_name
        self.tokenizer = tokenizer
        self.plain = chat_ids.PlainEncoder(tokenizer) if tokenizer is not None and content_cache else None
        self.template = chat_ids.TemplateEncoder(tokenizer) if tokenizer is not None and content_cache else None
        self.prompt_ids = prompt_ids
        self.load_snapshot: EngineLoad | None = None
        self.healthy = True
        self.closed = False
        self.requests: list[GenerationRequest] = []
        self.sent_at: list[tuple[str, float]] = []
        self.ended_at: dict[str, float] = {}
        self.streamed: dict[str, str] = {}
        self.aborted: list[str] = []
        self._aborted: set[str] = set()
        self._taken: dict[str, int] = {}
        self._open: set[str] = set()
        self._vocab: dict[str, int] = {}
        self._encoded: dict[str, tuple[int, ...]] = {}
        self._replies: dict[tuple[Reply, int, int], tuple[tuple[str, int, tuple[int, ...], str | None], ...]] = {}

    # -- the Engine protocol -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        if self.tokenizer is not None:
            return chat_ids.render_chat(self.tokenizer, messages, continue_final_message=continue_final_message)
        return _render([(m.role, m.content) for m in messages], continue_final_message)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        if self.tokenizer is not None:  # as VLLMEngine.encode_chat
            return chat_ids.encode_chat(
                self.tokenizer,
                messages,
                continue_final_message=continue_final_message,
                plain=self.plain,
                template=self.template,
            )
        if not self.prompt_ids:
            text = self.render_chat(messages, continue_final_message=continue_final_message)
            return ChatPrompt(text=text, token_ids=())
        return chat_ids.encode_chat_with(
            _render,
            self._template_ids,
            self._plain_ids,
            messages,
            continue_final_message=continue_final_message,
            nonce="scripted",
        )

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.plain(text) if self.plain else chat_ids.encode_plain(self.tokenizer, text))
        return len(_TOKEN.findall(text))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        rid = request.request_id
        self.requests.append(request)
        self.sent_at.append((rid, time.perf_counter()))
        if self.closed:
            raise EngineError("the engine is closed")
        prompt_tokens = (
            len(request.prompt_token_ids) if request.prompt_token_ids is not None else self.count_tokens(request.prompt)
        )
        if prompt_tokens >= self.max_model_len:
            raise EngineError(f"the prompt is {prompt_tokens} tokens, over the model's context of {self.max_model_len}")
        limit = min(request.sampling.max_tokens, self.max_model_len - prompt_tokens)
        deltas = self._deltas(self._reply(request), max(1, request.sampling.stream_interval), limit)
        self._open.add(rid)
        delay, last, sent = self.delay_s, len(deltas) - 1, ""
        try:
            for n, (text, count, ids, finish) in enumerate(deltas):
                if delay:
                    await asyncio.sleep(delay(request) if callable(delay) else delay)
                elif n % self.yield_every == 0:
                    await asyncio.sleep(0)  # let the answer's other requests stream too
                if rid in self._aborted:  # aborted from outside: the stream ends, as vLLM's does
                    return
                sent += text
                if n == last:
                    self.ended_at[rid] = time.perf_counter()
                yield GenerationDelta(text, count, prompt_tokens, 0, finish, token_ids=ids)
        finally:
            self.streamed[rid] = sent
            self._open.discard(rid)
            if rid not in self.ended_at:
                self._abort(rid)

    async def abort(self, request_id: str) -> None:
        self._abort(request_id)

    def load(self) -> EngineLoad:
        if self.load_snapshot is not None:
            return self.load_snapshot
        return EngineLoad(running=len(self._open), waiting=0, max_num_seqs=self.max_num_seqs, kv_cache_usage=0.0)

    async def aclose(self) -> None:
        self.closed = True

    # -- optional capabilities ------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        if self.closed:
            return EngineHealth(alive=False, detail="the engine is closed")
        return EngineHealth(alive=self.healthy, detail=None if self.healthy else "the scripted engine is down")

    def num_unfinished_requests(self) -> int:
        return len(self._open)

    # -- helpers for tests ---------------------------------------------------------------------------------

    def stage_requests(self, stage: str) -> list[GenerationRequest]:
        """Requests of one stage in the order sent: "point" finds every point, "point2" only the second."""
        return [r for r in self.requests if stage in (stage_of(r.request_id), _stage_key(stage_of(r.request_id)))]

    # -- internals ------------------------------------------------------------------------------------------

    def _reply(self, request: GenerationRequest) -> Reply:
        script = self.script
        if isinstance(script, str):  # Pieces is a tuple, so this is the text form
            return script
        if isinstance(script, Pieces):
            return script
        if callable(script):
            return script(request)
        stage = stage_of(request.request_id)
        key = stage if stage in script else _stage_key(stage)
        if key not in script:
            raise EngineError(f"no script for the {stage!r} request")
        reply = script[key]
        if isinstance(reply, str | Pieces):
            return reply
        n = self._taken.get(key, 0)
        self._taken[key] = n + 1
        return reply[min(n, len(reply) - 1)]

    def _deltas(self, reply: Reply, size: int, limit: int) -> tuple[tuple[str, int, tuple[int, ...], str | None], ...]:
        """(text, tokens, ids, finish reason) per delta, memoized: a benchmark times the pipeline, not this double.
        Like vLLM: the first token alone, then ``size`` tokens a delta, at most ``limit`` tokens."""
        key = (reply, size, limit)
        cached = self._replies.get(key)
        if cached is not None:
            return cached
        pieces = list(reply) if isinstance(reply, Pieces) else _TOKEN.findall(reply)
        finish = self.finish if len(pieces) <= limit else "length"
        pieces = pieces[:limit]
        bounds = [0, *range(1, len(pieces), size), len(pieces)] if pieces else [0, 0]
        deltas = tuple(
            ("".join(pieces[a:b]), b - a, tuple(self._id(p) for p in pieces[a:b]), finish if b == len(pieces) else None)
            for a, b in itertools.pairwise(bounds)
        )
        self._replies[key] = deltas
        return deltas

    def _abort(self, request_id: str) -> None:
        if request_id not in self._aborted:
            self._aborted.add(request_id)
            self.aborted.append(request_id)

    def _id(self, token: str) -> int:
        return self._vocab.setdefault(token, len(self._vocab) + 16)  # 0..15: the template's markers

    def _plain_ids(self, text: str) -> tuple[int, ...]:
        ids = self._encoded.get(text)
        if ids is None:
            ids = self._encoded[text] = tuple(self._id(token) for token in _TOKEN.findall(text))
        return ids

    def _template_ids(self, text: str) -> list[int]:
        """Template pieces: each marker one special id (below 16), the rest word tokens."""
        ids: list[int] = []
        pos = 0
        for match in _TEMPLATE_MARKER.finditer(text):
            ids += self._plain_ids(text[pos : match.start()])
            ids.append(_MARKERS.get(match.group(), 15))
            pos = match.end()
        return ids + list(self._plain_ids(text[pos:]))


# The built-in template's special tokens (ids below 16; ``_id`` numbers word tokens from 16).
_MARKERS = {f"<|{name}|>": i for i, name in enumerate(("end", "system", "user", "assistant", "tool"), start=1)}


def _stage_key(stage: str) -> str:
    """ "point12" -> "point"; "skeleton-guided" stays itself."""
    return stage.rstrip("0123456789")


def _render(pairs: list[tuple[str, str]], continue_final_message: bool) -> str:
    """The scripted engine's chat template: ``<|role|>`` before each message, ``<|end|>`` after it."""
    text = "".join(f"<|{role}|>\n{content}<|end|>\n" for role, content in pairs)
    if continue_final_message:
        return text[: -len("<|end|>\n")]
    return text + "<|assistant|>\n"


# -- retrieval ---------------------------------------------------------------------------------------------


class ListRetriever:
    """A fixed list of passages in place of an index (the pipeline only sees the ``Retriever`` protocol); records
    every query and its filters."""

    def __init__(self, passages: Sequence[Passage] = ()) -> None:
        self.passages = list(passages)
        self.queries: list[str] = []
        self.filters: list[dict[str, str] | None] = []

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        self.queries.append(query)
        self.filters.append(filters)
        return self.passages[:k]


class PerPointRetriever(ListRetriever):
    """The shared passages for ``question`` itself; for any other query (a point's), the shared ones first, then
    ``extra``: what a real index returns for question + point title."""

    def __init__(self, question: str, shared: Sequence[Passage], extra: Sequence[Passage]) -> None:
        super().__init__(shared)
        self.question = question
        self.extra = list(extra)

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        self.queries.append(query)
        self.filters.append(filters)
        return self.passages[:k] if query == self.question else [*self.passages, *self.extra][:k]
