"""Feeding a skeleton to the reader as a stream, the way the pipeline does, for the reader's tests."""

from __future__ import annotations

import random

from sotrag.app.skeleton import SkeletonParser


def stream_skeleton(text: str, seed: int, *, max_points: int, max_chunk: int) -> tuple[list[str], int | None]:
    """Feed ``text`` in random chunks of 1..``max_chunk`` characters; return the points and how much had been fed
    when ``list_ended`` first came on (None if never)."""
    rnd = random.Random(seed)
    parser = SkeletonParser(max_points=max_points)
    fed, ended = 0, None
    while fed < len(text):
        step = rnd.randint(1, max_chunk)
        parser.feed(text[fed : fed + step])
        fed = min(len(text), fed + step)
        if parser.list_ended and ended is None:
            ended = fed
    return parser.finish(), ended
