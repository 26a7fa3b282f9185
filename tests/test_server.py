"""The REST API, the OpenAI-compatible endpoint and the documents API, over a real ``sotrag serve`` process.

One server (tiny random-weight model on real vLLM, a real FAISS index) is started for the whole module. The
model writes gibberish, so the tests check structure: event order, counts, consistency between the streamed
events and the final result, status codes and error bodies; never the words.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serving import MAX_MODEL_LEN, NORMAL_MAX_TOKENS, POINT_MAX_TOKENS, ServerProcess, run_server

pytestmark = pytest.mark.engine

DOCS = Path(__file__).parent / "data" / "retrieval_docs"
QUESTION = "How should I prune and feed roses?"
MAX_UPLOAD_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("serve")
    with run_server(tiny_model_dir, work, index_dir=work / "index", extra_args=("--max-upload-mb", "0.0625")) as s:
        yield s
    log = s.log()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=180) as c:
        yield c


@pytest.fixture(scope="module")
def roses(client: httpx.Client) -> dict[str, Any]:
    """The index holds roses.md (uploaded through the API) for the answer tests."""
    r = client.post("/v1/documents", files={"files": ("roses.md", (DOCS / "garden" / "roses.md").read_bytes())})
    assert r.status_code == 201, r.text
    return r.json()["documents"][0]


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
            assert data["type"] == event
            yield event, data


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def assert_clean_error(r: httpx.Response, status: int, *, openai_format: bool = False) -> str:
    """The status, a JSON body with a one-line message, and no traceback."""
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    if openai_format:
        err = body["error"]
        assert isinstance(err["message"], str) and err["message"]
        assert err["type"] == "invalid_request_error"
        return str(err["message"])
    assert isinstance(body["detail"], str) and body["detail"] and "\n" not in body["detail"]
    return str(body["detail"])


# -- status ------------------------------------------------------------------------------------------------


def test_health_and_readiness(client: httpx.Client, tiny_model_dir: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    ready = r.json()
    assert ready["ready"] is True and ready["engine"] == "ready"
    assert ready["model"] == tiny_model_dir.name  # the folder's name only: no server path to clients
    assert str(tiny_model_dir.parent) not in r.text
    assert ready["max_model_len"] == MAX_MODEL_LEN
    assert ready["index"]["embedding_model"]
    assert ready["engine_unfinished_requests"] == 0


def test_openapi_schema_is_complete(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/answer", "/v1/chat/completions", "/v1/models", "/v1/documents", "/v1/documents/{doc_id}",
                 "/healthz", "/readyz", "/metrics"):
        assert path in paths, path
    components = schema["components"]["schemas"]
    for name in ("AnswerRequest", "AnswerResponse", "AnswerStats", "PointResult", "ChatCompletionRequest",
                 "ChatCompletion", "ErrorResponse", "OpenAIError", "UploadResponse", "DocumentList", "Readiness",
                 "SkeletonDelta", "PointDelta", "PointDone", "AnswerDone", "ErrorEvent"):
        assert name in components, name
    answer_200 = paths["/v1/answer"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in answer_200 and "application/json" in answer_200


def test_the_web_ui_is_served_from_the_same_process(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "gradio" in r.text.lower()


# -- documents -----------------------------------------------------------------------------------------------


def test_upload_list_and_delete_documents(client: httpx.Client, roses: dict[str, Any]) -> None:
    files = [
        ("files", ("bread.md", (DOCS / "kitchen" / "bread.md").read_bytes(), "text/markdown")),
        ("files", ("notes.txt", (DOCS / "kitchen" / "notes.txt").read_bytes(), "text/plain")),
    ]
    r = client.post("/v1/documents", files=files)
    assert r.status_code == 201, r.text
    uploaded = r.json()
    assert [f["status"] for f in uploaded["files"]] == ["added", "added"]
    assert all(f["chunks"] > 0 for f in uploaded["files"])
    by_source = {d["source"]: d for d in uploaded["documents"]}
    assert set(by_source) == {"uploads/bread.md", "uploads/notes.txt"}  # uploads have their own namespace

    listed = client.get("/v1/documents").json()
    sources = {d["source"] for d in listed["documents"]}
    assert {"uploads/roses.md", "uploads/bread.md", "uploads/notes.txt"} <= sources
    assert listed["chunks"] >= sum(d["chunks"] for d in listed["documents"] if d["source"] in sources)

    doc_id = by_source["uploads/notes.txt"]["doc_id"]
    r = client.delete(f"/v1/documents/{doc_id}")
    assert r.status_code == 200
    assert [d["source"] for d in r.json()["removed"]] == ["uploads/notes.txt"]
    assert "uploads/notes.txt" not in {d["source"] for d in client.get("/v1/documents").json()["documents"]}
    assert_clean_error(client.delete(f"/v1/documents/{doc_id}"), 404)

    # Uploading the same file again leaves it unchanged (content hash), not duplicated.
    again = client.post("/v1/documents", files={"files": ("bread.md", (DOCS / "kitchen" / "bread.md").read_bytes())})
    assert again.json()["files"][0]["status"] == "unchanged"
    assert [d["source"] for d in client.get("/v1/documents").json()["documents"]].count("uploads/bread.md") == 1


# -- answers ---------------------------------------------------------------------------------------------------


def test_sse_stream_shows_skeleton_then_parallel_points(client: httpx.Client, roses: dict[str, Any]) -> None:
    with client.stream("POST", "/v1/answer", json={"question": QUESTION, "mode": "sot", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    kinds = [e for e, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "answer_done"
    assert "route" not in kinds  # a mode was asked for: no routing
    assert "answer_delta" not in kinds and "fallback" not in kinds

    # The skeleton streams first and completes before any point starts.
    skeleton_done = kinds.index("skeleton_done")
    assert kinds.index("skeleton_delta") < skeleton_done < kinds.index("point_started")
    # (the tiny model's unguided skeleton is gibberish: the default path asks again, guided, and says so)
    assert set(kinds[1:skeleton_done]) <= {"skeleton_delta", "skeleton_retry"}
    titles = events[skeleton_done][1]["points"]
    assert 3 <= len(titles) <= 4

    # Every point is started, streams its own deltas, and is done exactly once.
    started = [d for e, d in events if e == "point_started"]
    assert [d["index"] for d in started] == list(range(1, len(titles) + 1))
    assert [d["title"] for d in started] == titles
    texts: dict[int, str] = {}
    first_delta: dict[int, int] = {}
    done_at: dict[int, int] = {}
    for n, (e, d) in enumerate(events):
        if e == "point_delta":
            texts[d["index"]] = texts.get(d["index"], "") + d["text"]
            first_delta.setdefault(d["index"], n)
        elif e == "point_done":
            assert d["index"] not in done_at
            done_at[d["index"]] = n
            assert d["text"] == texts[d["index"]]
            assert d["tokens"] == POINT_MAX_TOKENS
    assert set(done_at) == set(first_delta) == set(range(1, len(titles) + 1))
    # In parallel: every point has streamed text before any point is finished.
    assert max(first_delta.values()) < min(done_at.values())

    result = events[-1][1]["result"]
    assert result["mode"] == "sot" and result["fallback_reason"] is None
    retried = "skeleton_retry" in kinds  # then the skeleton is what streamed after the retry
    after = kinds.index("skeleton_retry") + 1 if retried else 0
    assert result["skeleton"] == "".join(d["text"] for e, d in events[after:] if e == "skeleton_delta")
    assert (result["skeleton_retry_reason"] is not None) == retried
    assert [p["title"] for p in result["points"]] == titles
    assert [p["text"] for p in result["points"]] == [texts[i] for i in range(1, len(titles) + 1)]
    assert result["grounded"] is True and result["grounding_note"] is None
    assert {s["source"] for s in result["sources"]} == {s["source"] for s in events[0][1]["sources"]}
    assert "uploads/roses.md" in {s["source"] for s in result["sources"]}
    stats = result["stats"]
    assert stats["num_points"] == len(titles)
    used = stats["skeleton_tokens"] + POINT_MAX_TOKENS * len(titles)
    assert stats["tokens"] > used if retried else stats["tokens"] == used  # a discarded skeleton counts too
    assert 0 < stats["skeleton_s"] < stats["total_s"] and 0 < stats["expansion_s"] < stats["total_s"]
    assert stats["cached_prompt_tokens"]["points"] > 0  # the points share the cached prefix


def test_non_streamed_answers(client: httpx.Client, roses: dict[str, Any]) -> None:
    normal = client.post("/v1/answer", json={"question": QUESTION, "mode": "normal"}).json()
    assert normal["mode"] == "normal" and normal["points"] == []
    assert normal["answer"] and normal["stats"]["tokens"] == NORMAL_MAX_TOKENS
    assert normal["grounded"] is True

    auto = client.post("/v1/answer", json={"question": QUESTION}).json()
    assert auto["requested_mode"] == "auto" and auto["mode"] == "sot"
    assert "router" in auto["route_reason"]
    assert auto["answer"].startswith("1. ")
    assert len(auto["points"]) == auto["stats"]["num_points"] >= 3

    # top_k=0: no retrieval, and the answer says it is not grounded.
    ungrounded = client.post("/v1/answer", json={"question": QUESTION, "mode": "normal", "top_k": 0}).json()
    assert ungrounded["sources"] == [] and ungrounded["grounded"] is False
    assert "top_k=0" in ungrounded["grounding_note"]

    # Per-request token limit and a follow-up turn.
    follow = client.post(
        "/v1/answer",
        json={"question": "And in winter?", "mode": "normal", "max_tokens": 8,
              "history": [{"question": QUESTION, "answer": normal["answer"]}]},
    ).json()
    assert follow["stats"]["tokens"] == 8
    assert follow["stats"]["prompt_tokens"]["normal"] > normal["stats"]["prompt_tokens"]["normal"]


def test_openai_client_streams_the_answer_in_order(server: ServerProcess, roses: dict[str, Any]) -> None:
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=180)
    assert [m.id for m in oa.models.list()] == ["sotrag-sot", "sotrag-normal", "sotrag-auto"]

    stream = oa.chat.completions.create(
        model="sotrag-sot",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    # Every point ran to its token limit (the test server forces min tokens), which OpenAI calls "length".
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    result = (finals[0].model_extra or {})["sotrag"]
    assert result["mode"] == "sot" and len(result["points"]) >= 3
    assert norm(text) == norm(result["answer"])  # the parallel points arrive as one text, in skeleton order
    assert text.startswith("1. ")
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == result["stats"]["tokens"] > 0

    completion = oa.chat.completions.create(
        model="sotrag-normal",
        messages=[
            {"role": "user", "content": "What is a rose?"},
            {"role": "assistant", "content": "A flower."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=16,
    )
    assert completion.model == "sotrag-normal"
    assert completion.choices[0].message.role == "assistant" and completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 16


def test_disconnect_mid_stream_aborts_every_engine_request(client: httpx.Client, roses: dict[str, Any]) -> None:
    """Points of 3000 tokens each (min tokens forced) would run for many seconds; the client leaves after the
    first point text, and the engine must hold no request of that answer soon after."""
    body = {"question": QUESTION, "mode": "sot", "stream": True, "max_tokens": 3000}
    with (
        httpx.Client(base_url=str(client.base_url), timeout=180) as streaming,
        streaming.stream("POST", "/v1/answer", json=body) as r,
    ):
        seen = []
        events = sse_events(r)  # keep a reference: closing this generator would close the connection
        for event, _ in events:
            seen.append(event)
            if event == "point_delta":
                break
        assert seen[-1] == "point_delta", seen
        during = client.get("/readyz").json()
        assert during["answers_in_flight"] == 1, json.dumps(during)
        assert during["engine_unfinished_requests"] >= 3  # every point is running
    deadline = time.monotonic() + 5  # an abort takes one engine step; the full answer would take far longer
    ready = client.get("/readyz").json()
    while ready["engine_unfinished_requests"] and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = client.get("/readyz").json()
    assert ready["engine_unfinished_requests"] == 0
    assert ready["answers_in_flight"] == 0
    cancelled = metric_value(client, "sotrag_answers_total", surface="rest", outcome="cancelled")
    assert cancelled == 1


def test_a_client_that_leaves_a_non_streamed_answer_cancels_it(client: httpx.Client, roses: dict[str, Any]) -> None:
    before = metric_value(client, "sotrag_answers_total", surface="rest", outcome="cancelled")
    body = {"question": QUESTION, "mode": "normal", "max_tokens": 3000}  # would run for many seconds
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(str(client.base_url) + "/v1/answer", json=body, timeout=httpx.Timeout(180, read=1.5))
    deadline = time.monotonic() + 5
    ready = client.get("/readyz").json()
    while (ready["engine_unfinished_requests"] or ready["answers_in_flight"]) and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = client.get("/readyz").json()
    assert ready["engine_unfinished_requests"] == 0 and ready["answers_in_flight"] == 0
    assert metric_value(client, "sotrag_answers_total", surface="rest", outcome="cancelled") == before + 1


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"question": ""}, 422, "empty"),
        ({"question": "   \n\t "}, 422, "empty"),
        ({"question": "roses " * (MAX_MODEL_LEN + 100)}, 413, str(MAX_MODEL_LEN)),
        ({"question": "hi", "mode": "fast"}, 422, "mode"),
        ({"question": "hi", "top_k": -1}, 422, "top_k"),
        ({"question": "hi", "max_tokens": 0}, 422, "max_tokens"),
        ({"mode": "sot"}, 422, "question"),
        ({"question": "hi", "colour": "blue"}, 422, "colour"),
        ('{"question": "hi",', 422, "malformed JSON"),
        ("[1, 2]", 422, "valid dictionary"),
    ],
)
def test_bad_answer_requests(client: httpx.Client, body: Any, status: int, needle: str) -> None:
    if isinstance(body, str):
        r = client.post("/v1/answer", content=body.encode(), headers={"content-type": "application/json"})
    else:
        r = client.post("/v1/answer", json=body)
    assert needle in assert_clean_error(r, status)


@pytest.mark.parametrize(
    ("body", "status", "needle", "param"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "gpt-4o", "model"),
        ({"model": "sotrag-sot", "messages": [{"role": "user", "content": "  "}]}, 422, "empty", "messages"),
        ({"model": "sotrag-sot", "messages": [{"role": "user", "content": "roses " * (MAX_MODEL_LEN + 100)}]},
         413, str(MAX_MODEL_LEN), "messages"),
        ({"model": "sotrag-sot", "messages": [{"role": "assistant", "content": "hi"}]}, 422, "last message",
         "messages"),
        ({"model": "sotrag-sot", "messages": []}, 422, "messages", "messages"),
        ({"model": "sotrag-sot", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 422, "n", "n"),
        ('{"model": "sotrag-sot", "messages": [', 422, "malformed JSON", None),
    ],
)
def test_bad_openai_requests_use_openai_error_format(
    client: httpx.Client, body: Any, status: int, needle: str, param: str | None
) -> None:
    if isinstance(body, str):
        r = client.post("/v1/chat/completions", content=body.encode(), headers={"content-type": "application/json"})
    else:
        r = client.post("/v1/chat/completions", json=body)
    assert needle in assert_clean_error(r, status, openai_format=True)
    assert r.json()["error"]["param"] == param
    if status == 404:
        assert r.json()["error"]["code"] == "model_not_found"
    assert_clean_error(client.get("/v1/models/gpt-4o"), 404, openai_format=True)


def test_openai_client_raises_typed_errors(server: ServerProcess) -> None:
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as not_found:
        oa.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "nope" in str(not_found.value)
    with pytest.raises(openai.UnprocessableEntityError):
        oa.chat.completions.create(model="sotrag-auto", messages=[{"role": "user", "content": ""}])


def test_bad_uploads(client: httpx.Client, roses: dict[str, Any]) -> None:
    before = client.get("/v1/documents").json()["documents"]
    detail = assert_clean_error(client.post("/v1/documents", files={"files": ("tool.exe", b"MZ\x90\x00")}), 415)
    assert ".exe" in detail
    assert_clean_error(client.post("/v1/documents", files={"files": ("noext", b"hello")}), 415)
    big = b"roses are red\n" * (MAX_UPLOAD_BYTES // 14 + 10)
    detail = assert_clean_error(client.post("/v1/documents", files={"files": ("big.txt", big)}), 413)
    assert str(MAX_UPLOAD_BYTES) in detail
    # Declared far over the limit: refused before the body is read.
    huge = b"x" * (MAX_UPLOAD_BYTES * 3)
    assert_clean_error(client.post("/v1/documents", files={"files": ("huge.txt", huge)}), 413)
    assert "empty" in assert_clean_error(client.post("/v1/documents", files={"files": ("blank.txt", b"  \n")}), 422)
    assert_clean_error(client.post("/v1/documents", data={"nothing": "here"}), 422)
    assert_clean_error(client.delete("/v1/documents/0000000000000000"), 404)
    assert client.get("/v1/documents").json()["documents"] == before  # nothing half-written


# -- metrics ---------------------------------------------------------------------------------------------------


def metric_value(client: httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics(client: httpx.Client, roses: dict[str, Any]) -> None:
    before = metric_value(client, "sotrag_http_requests_total", route="/v1/answer", status="200")
    answer = client.post("/v1/answer", json={"question": QUESTION, "mode": "sot"}).json()
    client.post("/v1/answer", json={"question": ""})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert metric_value(client, "sotrag_http_requests_total", route="/v1/answer", status="200") == before + 1
    assert metric_value(client, "sotrag_http_requests_total", route="/v1/answer", status="422") >= 1
    assert metric_value(client, "sotrag_answers_total", surface="rest", mode="sot", outcome="ok") >= 1
    for stage in ("retrieval", "ttft", "skeleton", "expansion", "total"):
        assert metric_value(client, "sotrag_stage_seconds_count", stage=stage, mode="sot") >= 1, stage
    assert metric_value(client, "sotrag_generated_tokens_total", mode="sot") >= answer["stats"]["tokens"]
    assert metric_value(client, "sotrag_cached_prompt_tokens_total", mode="sot") > 0
    assert metric_value(client, "sotrag_answers_in_flight") == 0
    assert metric_value(client, "sotrag_engine_unfinished_requests") == 0
    assert metric_value(client, "sotrag_ready") == 1
