"""Document-level retrieval metrics (recall@k, MRR@10, nDCG@10) over a JSONL question set.

A question's relevant items are documents (paths relative to the ingested folder). A retrieved chunk list is
first collapsed to documents: a document counts once, at the rank of its best chunk.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sotrag.retrieval.errors import RetrievalError

CUTOFFS = (1, 5, 10)


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    relevant: tuple[str, ...]


def load_questions(path: str | Path) -> list[EvalQuestion]:
    p = Path(path)
    if p.is_dir():
        raise RetrievalError(f"evaluation file {path} is a folder: give a JSONL file")
    if not p.is_file():
        raise RetrievalError(f"evaluation file not found: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RetrievalError(f"evaluation file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RetrievalError(f"cannot read evaluation file {path}: {exc.strerror or exc}") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, relevant = row["question"], row["relevant"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RetrievalError(f'{path}:{n}: expected {{"question": ..., "relevant": [...]}}') from exc
        if (
            not isinstance(question, str)
            or not question.strip()
            or not isinstance(relevant, list)
            or not relevant
            or not all(isinstance(r, str) and r.strip() for r in relevant)
        ):
            raise RetrievalError(
                f"{path}:{n}: question must be text and relevant a non-empty list of document paths (text)"
            )
        out.append(EvalQuestion(question, tuple(relevant)))
    if not out:
        raise RetrievalError(f"{path}: no questions")
    return out


def dedupe_documents(sources: Sequence[str]) -> list[str]:
    """Chunk sources in rank order -> documents in rank order, each at its best chunk's rank."""
    seen: dict[str, None] = {}
    for s in sources:
        seen.setdefault(s, None)
    return list(seen)


def question_metrics(ranked_docs: Sequence[str], relevant: Sequence[str]) -> dict[str, float]:
    rel = set(relevant)
    m: dict[str, float] = {}
    for k in CUTOFFS:
        m[f"recall@{k}"] = len(rel & set(ranked_docs[:k])) / len(rel)
    rr = 0.0
    for rank, d in enumerate(ranked_docs[:10], start=1):
        if d in rel:
            rr = 1.0 / rank
            break
    m["mrr@10"] = rr
    dcg = sum(1.0 / math.log2(rank + 1) for rank, d in enumerate(ranked_docs[:10], start=1) if d in rel)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(rel), 10) + 1))
    m["ndcg@10"] = dcg / idcg
    return m


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else ()
    return {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in keys}


def evaluate(index: Any, questions: Sequence[EvalQuestion], mode: str, depth: int = 50) -> dict[str, Any]:
    """Run every question through ``index.search`` in ``mode``; per-question and mean metrics."""
    rows = []
    per_question = []
    for q in questions:
        passages = index.search(q.question, k=depth, mode=mode)
        docs = dedupe_documents([p.source for p in passages])[:10]
        m = question_metrics(docs, q.relevant)
        rows.append(m)
        per_question.append({"question": q.question, "relevant": list(q.relevant), "top": docs[:5], **m})
    return {"mean": mean_metrics(rows), "questions": per_question}
