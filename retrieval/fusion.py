"""Rank fusion and diversity: reciprocal rank fusion of ranked lists, and maximal marginal relevance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = sum_i w_i / (k + rank_i(id)), rank from 1. Best first.

    RRF needs no score calibration between BM25 and cosine, which is why it is the usual hybrid default.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def page_boost(ranked: Sequence[tuple[int, float]], page_of: dict[int, str], weight: float) -> list[tuple[int, float]]:
    """Add to each chunk's score ``weight`` times the score of the best *other* candidate from its page. Best first.

    Two good chunks of one page are evidence that the page is the answer; a near-neighbour page with one lucky
    chunk then ranks below it. Only one other chunk counts, so a long page with many weak matches gains no more
    than a short one with two good ones (summing them all favoured long pages; see docs/retrieval.md).
    """
    if weight == 0 or not ranked:
        return list(ranked)
    top2: dict[str, list[float]] = {}
    for item, score in sorted(ranked, key=lambda kv: -kv[1]):
        best = top2.setdefault(page_of.get(item, f"#{item}"), [])
        if len(best) < 2:
            best.append(score)
    boosted = []
    for item, score in ranked:
        best = top2[page_of.get(item, f"#{item}")]
        other = best[0] if score < best[0] else (best[1] if len(best) > 1 else 0.0)
        boosted.append((item, score + weight * other))
    return sorted(boosted, key=lambda kv: (-kv[1], kv[0]))


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lambda_mult: float = 0.5) -> list[int]:
    """Maximal marginal relevance: indexes into ``candidates`` (normalized rows), relevant, not redundant."""
    if len(candidates) == 0 or k <= 0:
        return []
    relevance = candidates @ query
    chosen: list[int] = [int(np.argmax(relevance))]
    while len(chosen) < min(k, len(candidates)):
        redundancy = (candidates @ candidates[chosen].T).max(axis=1)
        score = lambda_mult * relevance - (1 - lambda_mult) * redundancy
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen
