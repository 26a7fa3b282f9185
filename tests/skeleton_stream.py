"""Feeding a skeleton to the reader as a stream, the way the pipeline does, for the reader's tests."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sotrag.app.skeleton import SkeletonParser, parse_skeleton


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


def last_line_end(text: str, title: str, before: Sequence[str] = ()) -> int:
    """Where the line of the last point ends (any line end the reader knows; the text's end if none): the last
    place it is written, or, given the titles ``before`` it, the first after them, read in order (a model may
    write the list again after it, as its whole answer)."""
    start = -1
    for known in before:
        start = max(start, text.find(known, start + 1))
    found = text.find(title, start + 1) if before else -1
    start = found if found >= 0 else text.rfind(title)
    ends = [i for i in (text.find(c, start) for c in "\n\r\u2028") if i >= 0]
    return min(ends, default=len(text))


def check_read_whole_and_streamed(text: str, titles: list[str], *, crlf: bool = False, seeds: int = 4) -> None:
    """``text`` gives exactly ``titles`` read whole and fed in random chunks (LF, or CR LF with ``crlf``), and the
    early stop never comes on before the last point's line is complete."""
    if crlf:
        text = text.replace("\n", "\r\n")
    assert parse_skeleton(text, max_points=20) == titles
    end = last_line_end(text, titles[-1], titles[:-1]) if titles else -1
    for seed in range(seeds):
        points, ended = stream_skeleton(text, seed, max_points=20, max_chunk=9)
        assert points == titles, seed
        if ended is not None:  # never before the last point's line is complete
            assert end >= 0 and ended > end, (seed, ended)


def numbered_lines(fmt: str, titles: list[str], sep: str = "\n") -> str:
    """``titles`` as a list, one ``fmt`` line each (``{n}`` the number from 1, ``{t}`` the title)."""
    return sep.join(fmt.format(n=i, t=t) for i, t in enumerate(titles, 1)) + "\n"
