"""What one answer did, recorded as it runs (``AnswerRecord``), and the ``AnswerResult`` assembled from it.

The record is the only state the pipeline's stages share; the result is computed from it once, at the end, so
the stats can never disagree with the events that went out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sotrag.app.citations import CitationStream
from sotrag.app.engine_calls import RequestTrace
from sotrag.app.events import AnswerResult, AnswerStats, Mode, PointResult, Source, StageTokens
from sotrag.app.passages import Grounding
from sotrag.app.points import Point
from sotrag.app.request import ResolvedRequest
from sotrag.prompts import PROMPT_VERSION


@dataclass
class AnswerRecord:
    """Everything the stages of one answer found out, in the order they ran."""

    request: ResolvedRequest
    grounding: Grounding = field(default_factory=Grounding)
    route_reason: str | None = None
    route_cause: str | None = None
    skeleton: RequestTrace | None = None
    skeleton_mode: str | None = None  # unguided, guided, guided retry
    skeleton_attempts: int = 0
    skeleton_tokens_discarded: int = 0  # tokens of a skeleton that was asked again
    point_tokens_withdrawn: int = 0  # tokens of points withdrawn after they started (the engine wrote them)
    skeleton_retry_reason: str | None = None
    skeleton_citations: CitationStream | None = None  # the skeleton as users saw it: its citation markers checked
    points: list[Point] = field(default_factory=list)
    fallback_reason: str | None = None
    normal: RequestTrace | None = None
    normal_text: str = ""  # what users saw of the normal answer: its citation markers checked
    normal_citations: CitationStream | None = None
    # the first token of a request whose result was thrown away (a retried skeleton, a withdrawn point): users
    # saw it stream, so the answer's time to first token counts it
    discarded_first_token_s: float | None = None

    def new_skeleton(self, trace: RequestTrace, kind: str) -> None:
        """A skeleton request starts; the tokens of an earlier one still count as generated."""
        if self.skeleton is not None:
            self.skeleton_tokens_discarded += self.skeleton.tokens
            self._discard(self.skeleton)
        self.skeleton = trace
        self.skeleton_mode = kind
        self.skeleton_attempts += 1

    def withdraw(self, trace: RequestTrace) -> None:
        """A started point is thrown away: its tokens still count as generated, its first token for ``ttft_s``."""
        self.point_tokens_withdrawn += trace.tokens
        self._discard(trace)

    def _discard(self, trace: RequestTrace) -> None:
        """A request's result is thrown away; its first token still counts for ``ttft_s``."""
        firsts = [t for t in (self.discarded_first_token_s, trace.first_token_s) if t is not None]
        self.discarded_first_token_s = min(firsts) if firsts else None


def assemble(record: AnswerRecord, total_s: float, model: str) -> AnswerResult:
    """The answer's result: its text in skeleton order (or the normal answer), every point's trace, the stats."""
    points = [_point_result(p, record.grounding.cite) for p in record.points]
    if record.normal is not None:
        mode: Mode = "normal"
        answer = record.normal_text.strip()
    else:
        mode = "sot"
        # as the in-order stream (``OrderedText``) hands it out: a point's trailing white space waits for more
        # text, and at its end there is none (a normal answer's is stripped the same way)
        answer = "\n".join(f"{p.index}. {p.title}{p.text}".rstrip() for p in points)
    return AnswerResult(
        question=record.request.question,
        mode=mode,
        requested_mode=record.request.mode,
        passages_k=record.request.passages_k,
        answer=answer,
        skeleton=record.skeleton_citations.text if record.skeleton_citations is not None else "",
        points=points,
        fallback_reason=record.fallback_reason,
        skeleton_retry_reason=record.skeleton_retry_reason,
        route_reason=record.route_reason,
        route_cause=record.route_cause,
        sources=record.grounding.sources,
        citations=_citations(record, points),
        finish_reason=overall_finish_reason(record.normal, points),
        stats=_stats(record, points, total_s),
        model=model,
        prompt_version=PROMPT_VERSION,
    )


def is_empty(text: str) -> bool:
    """A point text with nothing to read (no letter or digit: "", ":", " -"): its answer line is a bare title."""
    return not any(ch.isalnum() for ch in text)


def _citations(record: AnswerRecord, points: list[PointResult]) -> list[Source]:
    """Every source the answer cites, each once, in reading order (the points', or the normal answer's)."""
    numbers = [s.n for p in points for s in p.citations]
    if record.normal_citations is not None:
        numbers += record.normal_citations.cited
    return record.grounding.cite(list(dict.fromkeys(numbers)))


def _point_result(p: Point, cite: Callable[[Sequence[int]], list[Source]]) -> PointResult:
    t = p.trace
    return PointResult(
        index=p.index,
        title=p.title,
        text=p.text,
        tokens=t.tokens,
        start_s=t.start_s,
        first_token_s=t.first_token_s,
        end_s=t.end_s,
        prompt_tokens=t.prompt_tokens,
        cached_prompt_tokens=t.cached_prompt_tokens,
        uncached_prompt_tokens=t.prompt_tokens - t.cached_prompt_tokens,
        skeleton_prefix_tokens=p.skeleton_prefix_tokens,
        finish_reason=t.finish_reason,
        citations=cite(p.reader.cited),
    )


def _stats(record: AnswerRecord, points: list[PointResult], total_s: float) -> AnswerStats:
    skeleton, normal = record.skeleton, record.normal
    traces = [t for t in (skeleton, normal) if t is not None] + [p.trace for p in record.points]
    firsts = [t.first_token_s for t in traces if t.first_token_s is not None]
    firsts += [record.discarded_first_token_s] if record.discarded_first_token_s is not None else []
    ttft = min(firsts) if firsts else None
    tokens = sum(t.tokens for t in traces) + record.skeleton_tokens_discarded + record.point_tokens_withdrawn
    skeleton_s = None
    if skeleton is not None and skeleton.end_s is not None:
        skeleton_s = skeleton.end_s - skeleton.start_s
    expansion_s = None
    if points:
        ends = [p.end_s for p in points if p.end_s is not None]
        expansion_s = (max(ends) if ends else total_s) - min(p.start_s for p in points)
    prompt = StageTokens(
        skeleton=skeleton.prompt_tokens if skeleton else 0,
        points=sum(p.prompt_tokens for p in points),
        normal=normal.prompt_tokens if normal else 0,
    )
    cached = StageTokens(
        skeleton=skeleton.cached_prompt_tokens if skeleton else 0,
        points=sum(p.cached_prompt_tokens for p in points),
        normal=normal.cached_prompt_tokens if normal else 0,
    )
    all_prompt = prompt.skeleton + prompt.points + prompt.normal
    all_cached = cached.skeleton + cached.points + cached.normal
    return AnswerStats(
        ttft_s=ttft,
        tpot_s=(total_s - ttft) / (tokens - 1) if ttft is not None and tokens > 1 else None,
        retrieval_s=record.grounding.seconds,
        skeleton_s=skeleton_s,
        expansion_s=expansion_s,
        total_s=total_s,
        tokens=tokens,
        skeleton_tokens=skeleton.tokens if skeleton else 0,
        tokens_per_s=tokens / total_s if total_s > 0 else 0.0,
        num_points=len(points),
        prompt_tokens=prompt,
        cached_prompt_tokens=cached,
        cached_share=all_cached / all_prompt if all_prompt else 0.0,
        point_uncached_prompt_tokens=[p.uncached_prompt_tokens for p in points],
        passages_dropped=record.grounding.dropped,
        skeleton_mode=record.skeleton_mode,
        skeleton_attempts=record.skeleton_attempts,
        invalid_citations=sum(p.reader.invalid for p in record.points)
        + sum(r.invalid for r in (record.normal_citations, record.skeleton_citations) if r is not None),
        empty_points=sum(is_empty(p.text) for p in points),
    )


def overall_finish_reason(normal: RequestTrace | None, points: Sequence[PointResult]) -> str | None:
    """Why the whole answer ended: a normal answer's request's reason; in SoT ``length`` when any point was cut by
    its token limit, else ``stop``. What the OpenAI route reports as ``finish_reason``."""
    if normal is not None:
        return normal.finish_reason
    if not points:
        return None
    return "length" if any(p.finish_reason == "length" for p in points) else "stop"
