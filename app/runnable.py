"""sotrag as a LangChain ``Runnable``, so a SoT answer composes in LCEL chains.

Input: a question string, or a dict ``{"question": ..., "mode": ..., "history": [...]}``.
Output: the assembled answer string. Streaming yields the answer text in reading order (``OrderedText``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from sotrag.app.client import SoTRAG
from sotrag.app.ordered import OrderedText


def _split_input(value: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if "question" not in value:
        raise ValueError('input must be a question string or a dict with a "question" key')
    kwargs = {k: v for k, v in value.items() if k != "question"}
    return str(value["question"]), kwargs


class SoTRunnable(Runnable[str | dict[str, Any], str]):
    """invoke / ainvoke return the answer; stream / astream yield it in order as it is written."""

    def __init__(self, client: SoTRAG, **defaults: Any) -> None:
        self.client = client
        self.defaults = defaults

    def invoke(self, input: str | dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> str:
        question, extra = _split_input(input)
        return self.client.answer(question, **{**self.defaults, **extra}).answer

    async def ainvoke(self, input: str | dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> str:
        question, extra = _split_input(input)
        return (await self.client.aanswer(question, **{**self.defaults, **extra})).answer

    def stream(self, input: str | dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[str]:
        question, extra = _split_input(input)
        ordered = OrderedText()
        for event in self.client.stream(question, **{**self.defaults, **extra}):
            text = ordered.feed(event)
            if text:
                yield text

    async def astream(
        self, input: str | dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        question, extra = _split_input(input)
        ordered = OrderedText()
        async for event in self.client.astream(question, **{**self.defaults, **extra}):
            text = ordered.feed(event)
            if text:
                yield text
