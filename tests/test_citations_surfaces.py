"""The same citations on every surface: REST (JSON and SSE), the OpenAI route read with the ``openai`` client
(the ``sotrag`` extension field), the library, the CLI's view and the web UI's markdown.

Runs the real server app in-process over the scripted engine (tests/fakes.py): what is checked is how each
surface carries the pipeline's citations, not what a model writes."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai import OpenAI
from rich.console import Console

from sotrag.app.cli.ask import AnswerView
from sotrag.app.serving.app import create_app
from sotrag.app.serving.ui import LiveAnswer
from tests.test_citations_pipeline import QUESTION, pipeline

EXPECTED = [[1], [2], [1, 2]]  # per point, as tests/test_citations_pipeline.py streams them


@pytest.fixture
def client() -> Iterator[TestClient]:
    _, p = pipeline()
    app = create_app(p.settings, pipeline=p, ui=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:  # a loopback host: the Host allow-list lets it through
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield c


def numbers(cited: list[dict[str, Any]]) -> list[int]:
    return [c["n"] for c in cited]


def without_nulls(cited: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The OpenAI route leaves null fields out (a passage's page when it has none): the same citations otherwise."""
    return [{k: v for k, v in c.items() if v is not None} for c in cited]


def test_rest_json_sse_openai_and_library_give_the_same_citations(client: TestClient) -> None:
    body = {"question": QUESTION, "mode": "sot", "top_k": 2}
    whole = client.post("/v1/answer", json=body).json()
    assert [numbers(p["citations"]) for p in whole["points"]] == EXPECTED
    assert numbers(whole["citations"]) == [1, 2] and whole["stats"]["invalid_citations"] == 4  # 3 + the skeleton's

    sse = client.post("/v1/answer", json={**body, "stream": True}).text
    events = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
    done = {e["index"]: numbers(e["citations"]) for e in events if e["type"] == "point_done"}
    assert [done[i] for i in (1, 2, 3)] == EXPECTED
    final = events[-1]["result"]
    assert final["citations"] == whole["citations"] and final["answer"] == whole["answer"]

    openai = OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client)
    completion = openai.chat.completions.create(
        model="sotrag-sot", messages=[{"role": "user", "content": QUESTION}]
    )
    extension = (completion.model_extra or {})["sotrag"]
    assert without_nulls(extension["citations"]) == without_nulls(whole["citations"])
    assert [numbers(p["citations"]) for p in extension["points"]] == EXPECTED
    assert completion.choices[0].message.content == whole["answer"]  # the markers users see, checked
    chunks = list(openai.chat.completions.create(
        model="sotrag-sot", messages=[{"role": "user", "content": QUESTION}], stream=True
    ))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == whole["answer"]
    last = [c for c in chunks if (c.model_extra or {}).get("sotrag")][-1]
    assert without_nulls((last.model_extra or {})["sotrag"]["citations"]) == without_nulls(whole["citations"])


async def test_library_cli_and_ui_show_the_same_citations() -> None:
    _, p = pipeline()
    events = [e async for e in p.stream(QUESTION, mode="sot", top_k=2)]
    result = events[-1].result  # type: ignore[union-attr]
    assert [[c.n for c in pt.citations] for pt in result.points] == EXPECTED

    out = io.StringIO()
    view = AnswerView(Console(file=out, width=200), auto_refresh=False)
    for e in events:
        view.update(e)
    view.finish()
    shown = out.getvalue()
    assert "sources: [1] security.md > HTTPS" in shown
    assert "sources: [2] oauth.pdf, p. 3" in shown
    assert "[9]" not in shown and "[12]" not in shown

    live = LiveAnswer()
    for e in events:
        live.feed(e)
    markdown = live.chat_markdown()
    assert '(#sot-source-2 "oauth.pdf, p. 3: OAuth2 with password flow' in markdown
    assert "[9]" not in markdown
