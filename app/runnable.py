"""sotrag as a LangChain ``Runnable``, so a SoT answer composes in LCEL chains.

Input: a question string, a dict ``{"question": ..., "mode": ..., "history": [...]}``, or chat messages (a list of
messages, one message, or a ``PromptValue``: the last human message is the question). Anything else is a
``TypeError`` naming what is accepted. Output: the assembled answer string. Streaming yields the answer text in
reading order (``OrderedText``). Every call goes through LangChain's run machinery, so the callbacks of ``config``
(and ``with_config``) see the run start, end or fail, as with any other Runnable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig

from sotrag.app.client import SoTRAG
from sotrag.app.ordered import OrderedText

SoTInput = str | dict[str, Any] | PromptValue | BaseMessage | Sequence[BaseMessage]
EXPECTED = 'a question string, a dict with a "question" string, or chat messages with a human message'


def _split_input(value: object) -> tuple[str, dict[str, Any]]:
    """The question and the answer's other fields, from any input this Runnable accepts."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict):
        if "question" not in value:
            raise ValueError('input must be a question string or a dict with a "question" key')
        question = value["question"]
        if not isinstance(question, str):
            raise TypeError(f'the input\'s "question" must be a string, not {type(question).__name__}')
        return question, {k: v for k, v in value.items() if k != "question"}
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, BaseMessage):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, BaseMessage) for m in value):
        humans = [m for m in value if m.type == "human"]
        if not humans:
            raise ValueError("the input messages have no human message to answer")
        return humans[-1].text, {}
    raise TypeError(f"input must be {EXPECTED}, not {type(value).__name__}")


class SoTRunnable(Runnable[SoTInput, str]):
    """invoke / ainvoke return the answer; stream / astream yield it in order as it is written."""

    def __init__(self, client: SoTRAG, **defaults: Any) -> None:
        self.client = client
        self.defaults = defaults

    def _fields(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **extra}

    def invoke(self, input: SoTInput, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return self._call_with_config(self._invoke, input, config)

    def _invoke(self, input: SoTInput) -> str:
        question, extra = _split_input(input)
        return self.client.answer(question, **self._fields(extra)).answer

    async def ainvoke(self, input: SoTInput, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return await self._acall_with_config(self._ainvoke, input, config)

    async def _ainvoke(self, input: SoTInput) -> str:
        question, extra = _split_input(input)
        return (await self.client.aanswer(question, **self._fields(extra))).answer

    def stream(self, input: SoTInput, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[str]:
        yield from self._transform_stream_with_config(iter([input]), self._transform_text, config)

    def _transform_text(self, inputs: Iterator[SoTInput]) -> Iterator[str]:
        for input in inputs:
            question, extra = _split_input(input)
            ordered = OrderedText()
            for event in self.client.stream(question, **self._fields(extra)):
                text = ordered.feed(event)
                if text:
                    yield text

    async def astream(
        self, input: SoTInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        async def one() -> AsyncIterator[SoTInput]:
            yield input

        async for text in self._atransform_stream_with_config(one(), self._atransform_text, config):
            yield text

    async def _atransform_text(self, inputs: AsyncIterator[SoTInput]) -> AsyncIterator[str]:
        async for input in inputs:
            question, extra = _split_input(input)
            ordered = OrderedText()
            async for event in self.client.astream(question, **self._fields(extra)):
                text = ordered.feed(event)
                if text:
                    yield text
