"""The replay engine's script for the tests: real answers (``tests/data/real_answers.jsonl``, derived from three
models' answers to the Vicuna-80 questions) and a few restyled copies of them for line styles those models did
not write (bold titles, sub-bullets, a "Skeleton:" preamble and a closing remark, no final newline, a point
whose text runs into a second paragraph, too few points).

Why restyled copies and not invented answers: the text stays a real model's, only its layout changes, so the
point lengths and words are real. Every row is replayed by ``sotrag.app.engines.replay`` on the tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path

REAL_ANSWERS = Path(__file__).parent / "data" / "real_answers.jsonl"
CITED_QUESTION = "Which habits help most? (with sources)"
CITATION_MARKERS = ("[1]", "[9]", "[1, 2]")


def real_rows() -> list[dict]:
    return [json.loads(line) for line in REAL_ANSWERS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _short(rows: list[dict], n_points: int = 3) -> list[dict]:
    """Rows with at least ``n_points`` points, shortest answer first (the tiny model decodes on 2 shared cores)."""
    return sorted((r for r in rows if len(r["points"]) >= n_points), key=lambda r: len(r["normal"]))


def _restyle(row: dict, question: str, **changes: object) -> dict:
    return {**row, "question": question, "source_model": f"{row['source_model']} (restyled)", **changes}


def pick_rows() -> dict[str, dict]:
    """One row per case the tests run, each with its own question (one script per question: no tags needed)."""
    rows = real_rows()
    picked: dict[str, dict] = {}
    used: set[str] = set()

    def take(name: str, candidates: list[dict]) -> None:
        for r in candidates:
            if r["question"] not in used:
                picked[name] = r
                used.add(r["question"])
                return

    short = _short(rows)
    for style in sorted({s for r in rows for s in r.get("style", [])}):
        if not any(style in r.get("style", []) for r in picked.values()):  # each style of the corpus at least once
            take(f"style:{style}", [r for r in short if style in r.get("style", [])])
    for model in sorted({r["source_model"] for r in rows}):
        take(f"model:{model}", [r for r in short if r["source_model"] == model])
    take("many points", sorted((r for r in rows if len(r["points"]) > 10), key=lambda r: len(r["normal"])))

    base = short[0]
    pts = base["points"]
    bold = [
        {
            "title": p["title"],
            "text": f"**{p['title']}**{p['text'][len(p['title']) :]}"
            if p["text"].startswith(p["title"])
            else p["text"],
        }
        for p in pts
    ]
    picked["restyled:bold"] = _restyle(
        base,
        "Which habits help most? (bold titles)",
        skeleton="\n".join(f"{i}. **{p['title']}**" for i, p in enumerate(pts, 1)),
        points=bold,
    )
    picked["restyled:sub-bullets"] = _restyle(
        base,
        "Which habits help most? (sub-bullets)",
        skeleton="\n".join(
            f"{i}. {p['title']}\n   - {p['title'].split()[-1]} in practice" for i, p in enumerate(pts, 1)
        ),
        points=[{"title": p["title"], "text": p["text"] + "\n   - for example, start small"} for p in pts],
    )
    picked["restyled:preamble and closing remark"] = _restyle(
        base,
        "Which habits help most? (preamble)",
        skeleton="Skeleton:\n"
        + "\n".join(f"{i}. {p['title']}" for i, p in enumerate(pts, 1))
        + "\n\nI hope this plan helps.",
    )
    picked["restyled:no final newline, second paragraph"] = _restyle(
        base,
        "Which habits help most? (paragraphs)",
        skeleton="\n".join(f"{i}. {p['title']}" for i, p in enumerate(pts, 1)),
        points=[{"title": p["title"], "text": p["text"] + "\n\nA second paragraph the stop string cuts."} for p in pts],
    )
    picked["too few points"] = _restyle(base, "Which habits help most? (one point)", skeleton=f"1. {pts[0]['title']}")
    # citation markers after the recorded text: [1] names a passage, [9] none, [1, 2] two (tests/test_citations*)
    with_text = next(r for r in short if all(p["text"].strip() for p in r["points"]))  # sentences after titles
    tpts = with_text["points"]
    cited = [f"{p['text'].rstrip()} {m}" for p, m in zip(tpts, CITATION_MARKERS, strict=False)] + [
        p["text"] for p in tpts[len(CITATION_MARKERS) :]
    ]
    picked["citations"] = _restyle(
        with_text,
        CITED_QUESTION,
        skeleton="\n".join(f"{i}. {p['title']}" for i, p in enumerate(tpts, 1)),
        points=[{"title": p["title"], "text": text} for p, text in zip(tpts, cited, strict=True)],
    )
    return picked


def write_script(path: Path) -> dict[str, dict]:
    rows = pick_rows()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()), encoding="utf-8")
    return rows
