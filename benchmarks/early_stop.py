"""How much a skeleton request decodes when the model writes its skeleton and then goes on to the whole answer.

Real chat models often do: the skeleton's list, a blank line, then the answer (the list again with text, under an
"Answer" heading, or as paragraphs). Every character after the list is latency before the first point starts,
until the early stop (``SkeletonParser.list_ended``, checked by the pipeline's ``_enough_points``) ends the request.
For each recorded list-style answer (the model's own skeleton, then its own whole answer), the text is fed to the
reader in small chunks as a stream would, and the table gives how many stopped early, the words read before the
stop against the whole text, and whether the points read are the skeleton's own. Pure CPU, no model; words are
whitespace-split.

Usage: ``python benchmarks/early_stop.py [--corpus tests/data/real_answers.jsonl] [--chunk 2] [--min-points 3]
[--out benchmarks/results/early_stop_cpu.txt]``. To compare code versions, run it with another checkout on
``PYTHONPATH`` and the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import sotrag
from sotrag.app.pipeline import _enough_points
from sotrag.app.skeleton import SkeletonParser, parse_skeleton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import cpu_model

MAX_POINTS = 10


def read(text: str, chunk: int, min_points: int) -> tuple[int | None, list[str]]:
    """Where the early stop falls (characters read; None when it never does) and the points read."""
    parser = SkeletonParser(max_points=MAX_POINTS)
    for i in range(0, len(text), chunk):
        parser.feed(text[i : i + chunk])
        if _enough_points(parser, min_points):
            return min(i + chunk, len(text)), parser.finish(truncated=True)
    return None, parser.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="tests/data/real_answers.jsonl")
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--min-points", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rows = [json.loads(line) for line in Path(a.corpus).read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = stopped = same_points = 0
    words_read = words_all = words_skeleton = 0
    by_model: dict[str, list[int]] = {}
    for row in rows:
        skeleton = row["skeleton"].rstrip("\n")
        want = parse_skeleton(skeleton, MAX_POINTS)
        if len(want) < a.min_points:
            continue
        text = f"{skeleton}\n\n{row['normal']}"
        stop, points = read(text, a.chunk, a.min_points)
        cases += 1
        stopped += stop is not None
        same_points += points == want
        words_read += len(text[: stop or len(text)].split())
        words_all += len(text.split())
        words_skeleton += len(skeleton.split())
        counts = by_model.setdefault(row.get("source_model", "?"), [0, 0])
        counts[0] += 1
        counts[1] += stop is not None
    code = os.path.dirname(os.path.realpath(sotrag.__file__))
    commit = subprocess.run(["git", "-C", code, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    lines = [
        f"code: {commit.stdout.strip() or '?'}; CPU: {cpu_model()}; chunk {a.chunk} "
        f"characters; min_points {a.min_points}; corpus {a.corpus}",
        "| answers | stopped early | points = the skeleton's | words read | of all | of which the skeleton |",
        "|---|---|---|---|---|---|",
        f"| {cases} | {stopped} | {same_points} | {words_read} | {words_all} | {words_skeleton} |",
        "by source model (answers, stopped): " + ", ".join(f"{m} {c[0]}/{c[1]}" for m, c in sorted(by_model.items())),
    ]
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    if a.out:
        Path(a.out).write_text(text_out)


if __name__ == "__main__":
    main()
