"""Reading one streamed ``/v1/completions`` response of a vLLM server into ``GenerationDelta``s.

Token counts come from the streamed ``usage`` (``continuous_usage_stats``), cached prompt tokens from
``usage.prompt_tokens_details`` where the server reports them (``--enable-prompt-tokens-details``). Stop strings
beyond what the server takes (``SERVER_STOPS``) are applied here, by ``StopScanner``, exactly as vLLM would.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from typing import Any

import httpx

from sotrag.app.engines.base import (
    EngineError,
    EngineRejected,
    EngineUnavailable,
    GenerationDelta,
    GenerationRequest,
)

SERVER_STOPS = 4  # vLLM's server takes at most VLLM_MAX_STOP_STRINGS (4 by default) stop strings


async def read_completions(
    resp: httpx.Response, request: GenerationRequest, *, server_url: str, special: Callable[[], Collection[int]],
    aborted: Callable[[], bool],
) -> AsyncGenerator[GenerationDelta, None]:
    """The deltas of ``resp``, a streamed completion of ``request``; ``special()``: the special token ids now (they
    are left out of a delta's ids). The finishing delta waits for the usage chunk after it (the final counts); a
    stream that ends before a finish is an error unless ``aborted()`` (the request was aborted)."""
    prompt_tokens = len(request.prompt_token_ids or ())
    cached = 0
    completion_seen = 0
    held: GenerationDelta | None = None  # the finishing chunk waits for the usage chunk after it
    scanner = StopScanner(request.sampling.stop[SERVER_STOPS:])
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            text = f"the vLLM server {server_url} failed the request: {message}"
            if isinstance(error, dict) and error.get("code") in (400, 422):  # a value it refused mid-stream
                param = error.get("param") or None
                what = f"the request's {str(param)[:64]}" if param else "one of the request's values"
                raise EngineRejected(text, param=str(param)[:64] if param else None,
                                     public=f"the vLLM server refused {what}")
            raise EngineError(text, public=FAILED)
        usage = chunk.get("usage") or {}
        if usage:
            prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
            details = usage.get("prompt_tokens_details") or {}
            cached = int(details.get("cached_tokens") or cached)
        for choice in chunk.get("choices") or ():
            ids = choice.get("token_ids")
            if ids is not None:
                new = len(ids)
                ids = without_specials(ids, choice, special())
            elif usage.get("completion_tokens") is not None:
                new = int(usage["completion_tokens"]) - completion_seen
            else:
                new = 1 if choice.get("text") else 0
            completion_seen += new
            # Like vLLM, stop strings apply only once min_tokens are generated.
            text, stopped = scanner.feed(choice.get("text") or "", completion_seen >= request.sampling.min_tokens)
            finish = choice.get("finish_reason")
            if finish is not None or stopped:
                text += "" if stopped else scanner.flush()
            delta = GenerationDelta(
                text=text,
                new_tokens=new,
                prompt_tokens=prompt_tokens,
                cached_prompt_tokens=cached,
                finish_reason="stop" if stopped else finish,
                token_ids=tuple(ids or ()),
            )
            if stopped:  # a stop string the server was not given: end here (closing the stream aborts it)
                yield delta
                return
            if delta.finished:
                held = delta
                continue
            yield delta
    if held is None:
        if aborted():
            return
        raise EngineUnavailable(f"the stream from the vLLM server {server_url} ended before the request finished")
    yield dataclasses.replace(held, prompt_tokens=prompt_tokens, cached_prompt_tokens=cached)


FAILED = "the vLLM server failed the request (the server log says why)"


def without_specials(ids: list[int], choice: dict[str, Any], special: Collection[int]) -> list[int]:
    """A delta's generated ids as its text is: without special tokens (the EOS that ended it included), so a
    later prompt continues from the tokens the model wrote and no role marker comes in with them."""
    kept = [t for t in ids if t not in special]
    eos_stop = choice.get("finish_reason") == "stop" and not isinstance(choice.get("stop_reason"), str)
    if eos_stop and kept and ids and kept[-1] == ids[-1]:  # ended by an EOS (or stop id) not known as special
        kept.pop()
    return kept


class StopScanner:
    """Stop strings applied here, on the streamed text, exactly as vLLM applies them: the text before the first
    match is kept, and text that could still begin a stop string is held back until it cannot."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buf = ""

    def feed(self, text: str, active: bool = True) -> tuple[str, bool]:
        """The text safe to emit now, and whether a stop string was hit (the text is cut before it).
        Not ``active`` (fewer than min_tokens so far): nothing stops, nothing is held back."""
        if not self.stops or not active:
            return self.flush() + text, False
        self.buf += text
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[: min(hits)], ""
            return out, True
        keep = max(
            (k for s in self.stops for k in range(min(len(s) - 1, len(self.buf)), 0, -1) if self.buf.endswith(s[:k])),
            default=0,
        )
        out, self.buf = self.buf[: len(self.buf) - keep], self.buf[len(self.buf) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out
