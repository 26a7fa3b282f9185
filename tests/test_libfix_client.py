"""The library client's lifecycle and arguments: a closed ``SoTRAG`` fails at once (it used to wait forever on its
stopped loop), and constructor arguments are checked when given, naming the argument."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sotrag.app.client import ClientClosed, SoTRAG
from sotrag.app.config import Settings, SoTConfig
from tests.fakes import ScriptedEngine, default_skeleton, sampling


def _client() -> SoTRAG:
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " w" * 8, "normal": " w" * 8})
    s = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4),
                 sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4), passages_k=0)
    return SoTRAG(s, engine=engine)


def _in_thread(call: object) -> BaseException | None:
    """Run ``call`` in a thread with a deadline: the old client hung forever, so the test must not."""
    caught: list[BaseException | None] = []

    def body() -> None:
        try:
            call()  # type: ignore[operator]
            caught.append(None)
        except BaseException as exc:
            caught.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout=10)
    assert caught, "the call did not return within 10 s"
    return caught[0]


async def _aanswer(qa: SoTRAG) -> None:
    await qa.aanswer("How?")


async def _astream(qa: SoTRAG) -> None:
    async for _ in qa.astream("How?"):
        pass


@pytest.mark.parametrize("started", [True, False])
def test_every_call_on_a_closed_client_raises_at_once(started: bool) -> None:
    qa = _client()
    if started:
        assert qa.answer("How to sleep better?", mode="sot").answer
    qa.close()
    qa.close()  # twice: harmless
    calls = {
        "answer": lambda: qa.answer("How?"),
        "stream": lambda: qa.stream("How?"),
        "start": qa.start,
        "aanswer": lambda: asyncio.run(_aanswer(qa)),
        "astream": lambda: asyncio.run(_astream(qa)),
    }
    for name, call in calls.items():
        exc = _in_thread(call)
        assert isinstance(exc, ClientClosed) and isinstance(exc, RuntimeError), name
        assert str(exc) == "the SoTRAG client is closed; create a new one", name


def test_context_manager_closes_and_a_later_call_raises() -> None:
    with _client() as qa:
        assert qa.answer("How?", mode="normal").answer
    assert isinstance(_in_thread(lambda: qa.answer("How?")), ClientClosed)


@pytest.mark.parametrize(
    ("args", "kwargs", "kind", "words"),
    [
        (("bad",), {}, TypeError, "settings must be a sotrag Settings, not str"),
        ((), {"model": 123}, TypeError, "model must be a string or a path, not int"),
        ((), {"index_dir": 5}, TypeError, "index_dir must be a string or a path, not int"),
    ],
)
def test_constructor_arguments_are_checked(args: tuple, kwargs: dict, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words):
        SoTRAG(*args, **kwargs)


def test_constructor_keywords_are_kept(tmp_path: object) -> None:
    from pathlib import Path

    qa = SoTRAG(Settings(), model="some/model", index_dir=Path(str(tmp_path)))
    try:
        assert qa.settings.engine.model == "some/model" and qa.settings.index_dir == str(tmp_path)
    finally:
        qa.close()


def test_an_engine_that_fails_to_close_still_closes_the_client() -> None:
    qa = _client()
    qa.answer("How?", mode="normal")
    engine = qa.start().engine

    async def broken() -> None:
        raise RuntimeError("engine shutdown failed")

    engine.aclose = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="engine shutdown failed"):
        qa.close()
    assert not qa._thread.is_alive()
    assert isinstance(_in_thread(lambda: qa.answer("How?")), ClientClosed)
