"""The LangChain Runnable takes what LangChain users pass (a string, a dict with a "question" string, chat
messages) and refuses anything else by name (``None`` was "argument of type 'NoneType' is not iterable", and
``{"question": 123}`` answered "123"); and it runs through LangChain's run machinery, so the callbacks of
``config`` and ``with_config`` fire (they never did)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from sotrag.app.client import SoTRAG
from sotrag.app.config import Settings, SoTConfig
from sotrag.app.runnable import SoTRunnable
from tests.fakes import ScriptedEngine, default_skeleton, sampling


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self.events.append("start")

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self.events.append("end")

    def on_chain_error(self, *args: Any, **kwargs: Any) -> None:
        self.events.append("error")


@pytest.fixture(scope="module")
def runnable() -> Iterator[SoTRunnable]:
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " w" * 8, "normal": " w" * 8})
    s = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4),
                 sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4), passages_k=0)
    with SoTRAG(s, engine=engine) as qa:
        yield SoTRunnable(qa, mode="sot")


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        (None, TypeError, "input must be a question string, a dict .* not NoneType"),
        (5, TypeError, "not int"),
        ({"question": None}, TypeError, '"question" must be a string, not NoneType'),
        ({"question": 123}, TypeError, '"question" must be a string, not int'),
        ({"q": "How?"}, ValueError, '"question" key'),
        ([SystemMessage("be brief")], ValueError, "no human message"),
    ],
)
async def test_bad_inputs_are_refused_by_name(runnable: SoTRunnable, value: Any, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words):
        runnable.invoke(value)
    with pytest.raises(kind, match=words):
        await runnable.ainvoke(value)
    with pytest.raises(kind, match=words):
        list(runnable.stream(value))
    with pytest.raises(kind, match=words):
        [chunk async for chunk in runnable.astream(value)]
    with pytest.raises(kind, match=words):
        runnable.batch(["How?", value])


def test_chat_messages_and_prompt_values_answer_the_last_human_message(runnable: SoTRunnable) -> None:
    plain = runnable.invoke("How do I sleep?")
    assert plain.startswith("1. ")
    messages = [SystemMessage("be brief"), HumanMessage("Old?"), AIMessage("old"), HumanMessage("How do I sleep?")]
    assert runnable.invoke(messages) == plain
    assert runnable.invoke(HumanMessage("How do I sleep?")) == plain
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | runnable
    assert chain.invoke({"q": "How do I sleep?"}) == plain


async def test_callbacks_of_config_and_with_config_fire(runnable: SoTRunnable) -> None:
    calls = {
        "invoke": lambda h: runnable.invoke("How?", config={"callbacks": [h]}),
        "with_config": lambda h: runnable.with_config(callbacks=[h]).invoke("How?"),
        "stream": lambda h: "".join(runnable.stream("How?", config={"callbacks": [h]})),
    }
    for name, call in calls.items():
        h = Recorder()
        assert call(h).startswith("1. "), name
        assert h.events == ["start", "end"], name
    h = Recorder()
    assert (await runnable.ainvoke("How?", config={"callbacks": [h]})).startswith("1. ")
    assert h.events == ["start", "end"]
    h = Recorder()
    assert "".join([c async for c in runnable.astream("How?", config={"callbacks": [h]})]).startswith("1. ")
    assert h.events == ["start", "end"]
    h = Recorder()
    with pytest.raises(TypeError):
        runnable.invoke(None, config={"callbacks": [h]})  # type: ignore[arg-type]
    assert h.events == ["start", "error"]
