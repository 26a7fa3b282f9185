"""Typed request and response bodies of the REST API (they make the OpenAPI schema complete).

The answer itself reuses the pipeline's ``AnswerResult`` (the same contract as ``sotrag ask --json``), with
two fields added that only a server knows: whether the answer was grounded in documents, and why not.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from sotrag.app import request
from sotrag.app.config import SamplingConfig
from sotrag.app.events import AnswerResult, RequestedMode
from sotrag.app.serving.validation import JSONNumber, UnicodeText, valid_unicode
from sotrag.retrieval.store import MAX_FILTER_LENGTH


class Turn(BaseModel):
    """An earlier turn of the conversation: only the question and the final answer are kept (as in the paper)."""

    model_config = ConfigDict(extra="forbid")  # as the body: a misspelt key is an error, not a silent drop

    question: UnicodeText
    answer: UnicodeText


FilterKey = Literal["source", "heading", "doc_id", "kind"]
# Bounded: a glob over SQLite's pattern limit was a 500 (and read as a damaged index); the length is checked first.
FilterValue = Annotated[str, Field(max_length=MAX_FILTER_LENGTH), AfterValidator(valid_unicode)]


class AnswerRequest(BaseModel):
    """The body of ``POST /v1/answer``; ``to_request`` makes the pipeline's ``sotrag.app.request.AnswerRequest``."""

    model_config = ConfigDict(extra="forbid")

    question: UnicodeText = Field(description="the question; empty or whitespace-only is rejected (422)")
    mode: RequestedMode | None = Field(
        None,
        description="sot, normal, or auto (the router decides; SoT when no router is configured); "
        "none: the server's default mode (SOTRAG_DEFAULT_MODE, auto unless set)",
    )
    top_k: StrictInt | None = Field(default=None, ge=0, le=50, description="passages to retrieve; 0 answers ungrounded")
    filters: dict[FilterKey, FilterValue] | None = Field(
        None, description=f"restrict retrieval: source (glob), heading (glob), doc_id, kind; each value at most "
        f"{MAX_FILTER_LENGTH} characters"
    )
    stream: StrictBool = Field(default=False, description="true: Server-Sent Events of the pipeline's typed events")
    history: list[Turn] = Field(default_factory=list, max_length=50)
    max_tokens: StrictInt | None = Field(
        None, ge=1, le=32768, description="most tokens per point (SoT) or for the whole answer (normal)"
    )
    temperature: JSONNumber | None = Field(default=None, ge=0.0, le=2.0)  # 1 and 1.0, never "1" or true

    def to_request(self, sampling: SamplingConfig | None) -> request.AnswerRequest:
        """The pipeline's request for this body, with the client's sampling already checked by the service."""
        return request.AnswerRequest(
            question=self.question,
            mode=self.mode,
            history=tuple((t.question, t.answer) for t in self.history),
            passages_k=self.top_k,
            filters={str(k): v for k, v in self.filters.items()} if self.filters is not None else None,
            sampling=sampling,
        )


class AnswerResponse(AnswerResult):
    grounded: bool = Field(description="true when retrieved passages were given to the model")
    grounding_note: str | None = Field(default=None, description="why the answer is not grounded, when it is not")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in one line")


class ErrorEvent(BaseModel):
    """The last SSE event of a stream that failed after it started (no traceback, just the reason)."""

    type: Literal["error"] = "error"
    detail: str


class DocumentOut(BaseModel):
    doc_id: str
    source: str = Field(description="file name as uploaded (path relative to the ingested folder)")
    title: str
    kind: str = Field(description="markdown, text, html or pdf")
    chunks: int
    size: int = Field(description="bytes")
    ingested_at: float = Field(description="Unix time")


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    chunks: int = Field(description="chunks in the whole index")


class FileOutcome(BaseModel):
    source: str
    status: Literal["added", "updated", "unchanged", "skipped", "failed", "removed"]
    reason: str = ""
    chunks: int = 0


class UploadResponse(BaseModel):
    files: list[FileOutcome]
    documents: list[DocumentOut] = Field(description="the uploaded documents as they are now in the index")
    seconds: float


class DeleteResponse(BaseModel):
    removed: list[DocumentOut]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class IndexStatus(BaseModel):
    documents: int
    chunks: int
    embedding_model: str


class ServerHealth(BaseModel):
    url: str = Field(description="the server's label (server 1, server 2, ...), never its address")
    up: bool
    reason: str | None = Field(default=None, description="always null: why a server is down is in the log")
    running: int = Field(default=0, description="requests running on the server, from its last /metrics read")
    waiting: int = Field(default=0, description="requests waiting on the server, from its last /metrics read")
    kv_cache_usage: float = 0.0
    open_requests: int = Field(default=0, description="streams this sotrag process has open on the server now")


class Readiness(BaseModel):
    ready: bool
    engine: Literal["starting", "ready", "failed"]
    detail: str | None = None
    model: str | None = None
    max_model_len: int | None = None
    index: IndexStatus | None = Field(default=None, description="null: no index configured, answers are ungrounded")
    answers_in_flight: int
    answers_queued: int = Field(0, description="answers waiting for a slot (past the queue limit: 429)")
    engine_unfinished_requests: int | None = Field(
        None, description="requests vLLM still holds; 0 when no answer is running (a left client aborts its own)"
    )
    servers: list[ServerHealth] | None = Field(
        None, description="remote engine: each vLLM server by label, up or down; null for an in-process engine"
    )
    servers_up: int | None = Field(None, description="remote engine: how many vLLM servers are up")
    servers_down: int | None = Field(None, description="remote engine: how many vLLM servers are down")


def sse_event_schema(json_data: bool) -> dict[str, object]:
    """OpenAPI 3.1 ``text/event-stream`` schema: it describes ONE event (``event``/``data``/``id`` fields)."""
    data: dict[str, object] = {"type": "string"}
    if json_data:
        data["contentMediaType"] = "application/json"
    return {
        "type": "object",
        "properties": {"event": {"type": "string"}, "data": data, "id": {"type": "string"},
                       "retry": {"type": "integer"}},
        "required": ["data"],
    }
