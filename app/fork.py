"""The fork: where one skeleton request branches into one request per point (SGLang's ``fork``, by hand).

A point's prompt is the skeleton request's own prompt ids, then the ids the skeleton request generated, then the
point's suffix (the end of the assistant turn, the point instruction, the open "i. title"). vLLM's prefix cache
matches token ids, so this serves the whole skeleton to every point; re-encoding the skeleton's text would give
other ids than the model wrote, and no cache hit. Where continuing the ids cannot be exact, the point prompt is
encoded afresh (correct, only slower).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from sotrag.app.config import SoTConfig
from sotrag.app.engine_calls import EngineCalls, RequestTrace
from sotrag.app.engines.base import ChatMessage, ChatPrompt, GenerationRequest, encode_chat_async
from sotrag.app.point_end import PointEnd, stops
from sotrag.app.skeleton import parse_skeleton
from sotrag.prompts import build as prompts
from sotrag.retrieval.types import Passage


@dataclass(frozen=True)
class SkeletonIds:
    """The skeleton request's prompt ids and the ids it had generated when a point forked from it."""

    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]

    @classmethod
    def of(cls, skeleton: RequestTrace | None) -> SkeletonIds:
        """The ids of ``skeleton`` as far as they are written now (none before the skeleton request exists)."""
        if skeleton is None:
            return cls((), ())
        return cls(skeleton.prompt_token_ids, tuple(skeleton.token_ids))


@dataclass(frozen=True)
class Fork:
    """What every point of one skeleton shares: the skeleton's prompt messages and the answer's SoT settings."""

    calls: EngineCalls
    skeleton_messages: Sequence[ChatMessage]
    sot: SoTConfig

    async def point_request(
        self,
        index: int,
        title: str,
        skeleton_text: str,
        skeleton_ids: SkeletonIds,
        extra: list[tuple[int, Passage]] | None = None,
    ) -> tuple[GenerationRequest, int]:
        """Point ``index``'s request, and how many of its prompt tokens continue the skeleton request's ids."""
        messages = prompts.point_messages(
            list(self.skeleton_messages),
            skeleton_text,
            index,
            title,
            sentences=self.sot.point_sentences,
            extra_passages=extra or [],
        )
        most = self.sot.max_points + 1
        s = self.calls.sampling
        options = self.calls.options(
            s.point_max_tokens,
            min_tokens=s.point_min_tokens,
            stop=stops(index, most),
            stream_interval=s.stream_interval,
        )
        whole = await encode_chat_async(self.calls.engine, messages, continue_final_message=True)
        continued = continue_skeleton(whole, len(self.skeleton_messages) - len(messages), skeleton_text, skeleton_ids)
        prompt, ids = continued or (whole.text, whole.token_ids)
        prefix = len(skeleton_ids.prompt_ids) + len(skeleton_ids.output_ids) if continued is not None else 0
        request = GenerationRequest(self.calls.request_id(f"point{index}"), prompt, options, prompt_token_ids=ids)
        end = PointEnd(index, most, title, _titles(skeleton_text, self.sot.max_points))
        self.calls.end_with(request.request_id, end)  # what the stop strings miss: cut in the stream
        return request, prefix


@functools.lru_cache(maxsize=16)
def _titles(skeleton_text: str, max_points: int) -> tuple[str, ...]:
    """The titles of a skeleton as the model wrote them (every point of one answer reads the same text)."""
    return tuple(parse_skeleton(skeleton_text, max_points))


def continue_skeleton(
    whole: ChatPrompt, index: int, skeleton_text: str, skeleton: SkeletonIds
) -> tuple[str, tuple[int, ...]] | None:
    """A point prompt as the skeleton request's own ids, then the ids it generated, then the point's suffix,
    taken from ``whole`` (the point prompt encoded whole, message ``index`` being the skeleton's assistant turn).
    Returns the prompt text (for logs) and ids, or None where that would not be exact: no ids from the engine, or
    a template that renders the skeleton request's prompt differently inside the longer conversation."""
    if not skeleton.prompt_ids or not skeleton.output_ids or len(whole.token_spans) < -index:
        return None
    tokens, chars = whole.token_spans[index], whole.text_spans[index]
    if tokens is None or chars is None or whole.token_ids[: tokens[0]] != skeleton.prompt_ids:
        return None
    text = whole.text[: chars[0]] + skeleton_text + whole.text[chars[1] :]
    return text, skeleton.prompt_ids + skeleton.output_ids + whole.token_ids[tokens[1] :]
