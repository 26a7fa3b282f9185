"""The UI's API functions (Gradio serves them at /gradio_api/call/<name> to any caller) answer bad input (null or
wrong types for every input) with a short message, never pydantic's multi-line report or a traceback logged at
error level; the server stays usable. A real server (uvicorn) runs the app: Gradio's queue needs its lifespan."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from tests.fakes import ScriptedEngine, default_skeleton, sampling
from tests.gradio_api import gradio_call, served

WRONG = [None, 5, 1.5, True, ["a"], {"a": 1}]


@pytest.fixture(scope="module")
async def base() -> AsyncIterator[str]:
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " w" * 8, "normal": " w" * 8})
    s = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4),
                 sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4))
    app = create_app(s, pipeline=SoTPipeline(engine, s), ui=True)
    async with served(app) as url:
        yield url


call = gradio_call


def inputs_with(index: int, value: Any) -> list[Any]:
    data: list[Any] = ["roses in winter?", "normal", False, [], []]
    data[index] = value
    return data


@pytest.mark.parametrize("index", range(5))
async def test_respond_answers_wrong_inputs_with_a_short_message(
    base: str, index: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    seen_errors: list[tuple[int, str]] = []
    for value in WRONG:
        event, data = await call(base, "respond", inputs_with(index, value))
        assert "validation error" not in data and "pydantic" not in data and "Traceback" not in data, data
        assert "For further information" not in data, data
        if event == "error":  # Gradio's own check of a component's value (a radio's choices): one short line
            error = json.loads(data.split("data:", 1)[1])["error"]
            assert isinstance(error, str) and "\n" not in error and len(error) < 200 and "<class" not in error, error
            seen_errors.append((index, error))
        if value is None and index == 0:
            messages = [line for line in data.splitlines() if line.startswith("data:")]
            last = json.loads(messages[-1][5:])
            assert "⚠" in str(last[1][-1]["content"]), last  # the reason, in the chat
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info], caplog.text
    assert all(e.startswith("bad input: ") for _, e in seen_errors), seen_errors
    event, data = await call(base, "respond", inputs_with(0, "roses in winter?"))
    assert event == "complete" and "⚠" not in data  # still usable


@pytest.mark.parametrize(("name", "good"), [("remove_doc", [None, None]), ("add_files", [None, None])])
async def test_document_functions_answer_wrong_inputs_with_a_short_message(
    base: str, name: str, good: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for index in range(len(good)):
        for value in WRONG:
            data_in = list(good)
            data_in[index] = value
            event, data = await call(base, name, data_in)
            assert "Traceback" not in data and "validation error" not in data, data
            if event == "error":
                error = json.loads(data.split("data:", 1)[1])["error"]
                assert error.startswith("bad input: ") and "\n" not in error, error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info], caplog.text
