"""Typed events and results of one answer.

Every surface (library, CLI, REST/SSE, Gradio) consumes this one stream, so the models are pydantic: they
serialize to the JSON that the REST API and ``sotrag ask --json`` promise.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

Mode = Literal["sot", "normal"]
RequestedMode = Literal["sot", "normal", "auto"]


class Source(BaseModel):
    """A passage given to the model, as shown under the answer."""

    n: int = Field(description="the [n] the model may cite")
    source: str
    heading: str = ""
    score: float
    snippet: str
    chunk_id: str = ""
    page: int | None = Field(default=None, description="the page of a PDF passage (1-based)")


class PointResult(BaseModel):
    index: int = Field(description="1-based, in skeleton order")
    title: str
    text: str = Field(description="the expansion the model wrote after the title")
    tokens: int = 0
    start_s: float = Field(description="request submitted, seconds from the start of the answer")
    first_token_s: float | None = None
    end_s: float | None = None
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    uncached_prompt_tokens: int = Field(0, description="prompt tokens vLLM computed: not served by the prefix cache")
    skeleton_prefix_tokens: int = Field(
        0, description="prompt tokens continued from the skeleton request's own ids (its prompt and output)"
    )
    finish_reason: str | None = None
    citations: list[Source] = Field(
        default_factory=list, description="the passages this point cites ([n] markers that name one), in order"
    )


class StageTokens(BaseModel):
    skeleton: int = 0
    points: int = 0
    normal: int = 0


class AnswerStats(BaseModel):
    ttft_s: float | None = Field(None, description="first generated token of any stage")
    tpot_s: float | None = Field(None, description="(total - ttft) / (tokens - 1): wall time per output token")
    retrieval_s: float = 0.0
    skeleton_s: float | None = None
    expansion_s: float | None = None
    total_s: float = 0.0
    tokens: int = 0
    skeleton_tokens: int = 0
    tokens_per_s: float = 0.0
    num_points: int = 0
    prompt_tokens: StageTokens = Field(default_factory=StageTokens)
    cached_prompt_tokens: StageTokens = Field(default_factory=StageTokens)
    cached_share: float = Field(0.0, description="prompt tokens served from the prefix cache / all prompt tokens")
    passages_dropped: int = Field(0, description="retrieved passages that did not fit the context budget")
    point_uncached_prompt_tokens: list[int] = Field(
        default_factory=list, description="per point, in skeleton order: prompt tokens not served by the prefix cache"
    )
    skeleton_mode: str | None = Field(
        None, description="how the skeleton that was used came about: unguided, guided, or guided retry"
    )
    skeleton_attempts: int = Field(0, description="skeleton requests sent (2 after a guided retry)")
    invalid_citations: int = Field(
        0, description="citation numbers the model wrote that name no passage: removed from the text shown"
    )
    empty_points: int = Field(0, description="points that ended with nothing to read: the answer shows their title")


class AnswerResult(BaseModel):
    question: str
    mode: Mode = Field(description="the mode actually used")
    requested_mode: RequestedMode
    passages_k: int | None = Field(
        default=None, description="passages asked of retrieval (the request's top_k, resolved)"
    )
    answer: str
    skeleton: str = ""
    points: list[PointResult] = Field(default_factory=list)
    fallback_reason: str | None = None
    skeleton_retry_reason: str | None = Field(None, description="why the skeleton was asked again, guided")
    route_reason: str | None = None
    route_cause: str | None = Field(
        None, description="auto mode: what decided the route (question, load, fits: SoT allowed, default)"
    )
    sources: list[Source] = Field(default_factory=list)
    citations: list[Source] = Field(
        default_factory=list, description="every passage the answer cites, each once, in the order first cited"
    )
    stats: AnswerStats
    finish_reason: str | None = Field(
        None, description="why the answer ended: stop (end of text or a stop string), length (a token limit cut it; "
        "SoT: any point), abort; None when unknown"
    )
    model: str
    prompt_version: str


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def stats_rows(result: AnswerResult) -> list[tuple[str, str]]:
    """An answer's stats as (label, value) rows: the one wording the CLI table and the web UI share."""
    s = result.stats
    why = result.fallback_reason or result.route_reason or f"requested {result.requested_mode}"
    if result.skeleton_retry_reason and not result.fallback_reason:
        why = f"{why}; {result.skeleton_retry_reason}" if result.route_reason else result.skeleton_retry_reason
    prompt = s.prompt_tokens.skeleton + s.prompt_tokens.points + s.prompt_tokens.normal
    return [
        ("mode", f"{result.mode} ({why})"),
        ("time to first token", seconds_text(s.ttft_s)),
        ("retrieval", seconds_text(s.retrieval_s)),
        ("skeleton", seconds_text(s.skeleton_s)),
        ("expansion", seconds_text(s.expansion_s)),
        ("total", seconds_text(s.total_s)),
        ("tokens", str(s.tokens)),
        ("tokens/s", f"{s.tokens_per_s:.1f}"),
        ("points", str(s.num_points)),
        ("prefix-cache share", f"{s.cached_share:.0%} of {prompt} prompt tokens"),
        *(
            [("uncached per point", ", ".join(str(n) for n in s.point_uncached_prompt_tokens))]
            if s.point_uncached_prompt_tokens
            else []
        ),
        ("model", result.model),
    ]


class SourcesEvent(BaseModel):
    type: Literal["sources"] = "sources"
    sources: list[Source]


class RouteEvent(BaseModel):
    type: Literal["route"] = "route"
    mode: Mode
    reason: str


class SkeletonDelta(BaseModel):
    type: Literal["skeleton_delta"] = "skeleton_delta"
    text: str


class SkeletonDone(BaseModel):
    type: Literal["skeleton_done"] = "skeleton_done"
    points: list[str]


class PointStarted(BaseModel):
    type: Literal["point_started"] = "point_started"
    index: int
    title: str


class PointDelta(BaseModel):
    type: Literal["point_delta"] = "point_delta"
    index: int
    text: str


class PointDone(BaseModel):
    type: Literal["point_done"] = "point_done"
    index: int
    text: str
    tokens: int
    citations: list[Source] = Field(default_factory=list, description="the passages the point cites, in order")


class PointWithdrawn(BaseModel):
    """A started point the answer no longer has: its skeleton was discarded (a retry, a fallback), or, in eager
    mode, the skeleton reader took the point back (what it had read was reasoning before a lone ``</think>``).
    Its text so far is not part of the answer; a ``point_started`` with the same index may follow."""

    type: Literal["point_withdrawn"] = "point_withdrawn"
    index: int
    reason: str


class FallbackEvent(BaseModel):
    type: Literal["fallback"] = "fallback"
    reason: str


class SkeletonRetry(BaseModel):
    """The unguided skeleton gave too few points: it is discarded and asked again, regex-guided."""

    type: Literal["skeleton_retry"] = "skeleton_retry"
    reason: str


class AnswerDelta(BaseModel):
    """Normal decoding streams plain text."""

    type: Literal["answer_delta"] = "answer_delta"
    text: str


class AnswerDone(BaseModel):
    type: Literal["answer_done"] = "answer_done"
    result: AnswerResult


Event = Annotated[
    SourcesEvent
    | RouteEvent
    | SkeletonDelta
    | SkeletonDone
    | PointStarted
    | PointDelta
    | PointDone
    | PointWithdrawn
    | FallbackEvent
    | SkeletonRetry
    | AnswerDelta
    | AnswerDone,
    Field(discriminator="type"),
]
