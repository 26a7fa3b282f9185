"""The real-answer corpus: list-style answers that real chat models wrote, split into the skeleton that model
would write, each point's text and the whole answer, for replay tests and real-shape benchmarks.

    python benchmarks/real_corpus.py [FOLDER] [--out tests/data/real_answers.jsonl] [--tokenizer tiny|DIR]

FOLDER defaults to ``../shared/data/real-answers`` next to the checkout.

Reads ``answer_*.jsonl`` (``question_id``, ``text``, ``model_id``) and ``question.jsonl`` from the folder. An
answer is list-style when it has a numbered list of at least 3 top-level items ("1." "1)" "**1.**" "### 1."
"Section 1:"), or, with no numbered list, at least 3 top-level bullets that hold at least half its words.
For each one:

- ``skeleton``: the list's item lines cut to their titles, in the answer's own line style (its numbering,
  bold, heading marks; a blank line between items if the answer had them);
- ``points``: ``{"title", "text"}`` per item; ``text`` is what follows the title (its description on the item
  line, then the item's sub-lines, and any text before the next item), empty for a one-line item;
- ``normal``: the whole answer as written; ``preamble`` / ``closing``: the text before / after the list;
- ``style``: tags of what the answer's list does (see ``STYLE_TAGS``).

This derivation is written apart from ``sotrag.app.skeleton`` (the reader must recover its titles, so it may
not share the reader's rules). It prints a table per model (points, their length spread and the single-user
SoT bound: all the answer's tokens / (the skeleton's + the longest point's)) and writes
``benchmarks/results/real_corpus.json``. Tokens are whitespace words unless ``--tokenizer`` names a local
tokenizer folder.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sotrag.app.skeleton import MAX_TITLE_CHARS  # the reader's limit on a title's length (not its rules)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STYLE_TAGS = (
    "numbered", "bullets", "paren", "bold", "heading", "keyword", "colon", "dash", "sentence", "blank_lines",
    "preamble", "closing", "sub_bullets", "indented", "restart", "text_between", "duplicates", "many_points",
    "truncated", "list_minor", "code", "long_title",
)  # fmt: skip

_ITEM = re.compile(
    r"^(?P<indent>[ \t]*)(?P<head>#{1,6}[ \t]+)?(?P<bold>\*\*)?"
    r"(?P<mark>(?P<num>\d{1,2})[.)]|(?i:section|step|part|point|tip)[ \t]+(?P<knum>\d{1,2}):)"
    r"(?P<close>\*\*)?[ \t]+(?P<body>\S.*)$"
)
_BULLET = re.compile(r"^(?P<indent>[ \t]*)(?P<mark>[-*•+])[ \t]+(?P<body>\S.*)$")
_SENTENCE = re.compile(r"(?<=[a-z0-9)\]'\"])([.!?])(?=\s+[A-Z\"'(])")


@dataclass
class Item:
    line: int
    indent: int
    number: int | None
    prefix: str  # the line's marker as written, e.g. "1. ", "**1.** ", "### 1. ", "Section 1: ", "- "
    bold_number: bool  # "**1. Title**": the bold opens before the number and closes after the title
    body: str
    title: str = ""
    title_bold: bool = False
    title_end: str = ""  # the sentence mark that ended a sentence title
    separator: str = ""  # "colon" / "dash" / "sentence" / ""
    text: list[str] = field(default_factory=list)


@dataclass
class Derived:
    style: list[str]
    skeleton: str
    points: list[dict[str, str]]
    preamble: str
    closing: str


def _indent(s: str) -> int:
    return len(s.expandtabs(4)) - len(s.expandtabs(4).lstrip(" "))


def _split_title(item: Item) -> str:
    """Set the item's title and return its description (the rest of the item line)."""
    body = item.body.strip()
    if item.bold_number:  # "**1. Title**: rest" / "**1. Title:** rest"
        head, _, rest = body.partition("**")
        item.title_bold = True
        item.title, desc = head.strip().rstrip(":").strip(), rest.lstrip(" :-–—").strip()
        return desc
    bold = re.match(r"\*\*(.+?)\*\*\s*(.*)$", body)
    if bold and (not bold.group(2) or bold.group(2)[0] in ":-–—"):
        item.title_bold = True
        item.title = bold.group(1).strip().rstrip(":").strip()
        item.separator = "colon" if bold.group(2).startswith(":") or bold.group(1).endswith(":") else ""
        return bold.group(2).lstrip(" :-–—").strip()
    plain = body.replace("**", "")
    # the title ends at the first ": " (or a final ":") or spaced dash, whichever comes first
    cut = re.search(r":\s+|:$|\s[-–—]\s", plain)
    if cut:
        item.title, item.separator = plain[: cut.start()].strip(), "colon" if ":" in cut.group() else "dash"
        return plain[cut.end() :].strip()
    sentence = next((m for m in _SENTENCE.finditer(plain) if not _abbreviation(plain[: m.start()])), None)
    if sentence and plain[: sentence.start()].split():
        item.title, item.title_end, item.separator = plain[: sentence.start()], sentence.group(1), "sentence"
        return plain[sentence.end() :].strip()
    end = plain.rstrip()[-1:]
    item.title_end = end if end in ".!?" else ""
    item.title = plain.rstrip(".!?;,: ").strip()
    return ""


def _cut(title: str) -> str:
    """A title longer than the reader keeps (``MAX_TITLE_CHARS``) is cut at a word: what a reader recovers."""
    if len(title) <= MAX_TITLE_CHARS:
        return title
    return title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:.-–—")


def _abbreviation(before: str) -> bool:
    word = before.split()[-1] if before.split() else ""
    return "." in word or word.lower() in {"dr", "mr", "mrs", "ms", "vs", "etc", "st", "no", "approx"}


def _skeleton_line(item: Item) -> str:
    title = item.title + item.title_end if item.separator in ("sentence", "") else item.title
    if item.bold_number:
        return f"**{item.prefix.strip('* ')} {title}**"
    if item.title_bold:
        return f"{item.prefix}**{title}**"
    return f"{item.prefix}{title}"


def _items(lines: list[str]) -> tuple[list[Item], str, set[str]]:
    """The answer's top-level list items (numbered, else bullets), outside code fences."""
    numbered: list[Item] = []
    bullets: list[Item] = []
    in_code = False
    tags: set[str] = set()
    for n, line in enumerate(lines):
        if line.strip().startswith("```"):
            in_code = not in_code
            tags.add("code")
            continue
        if in_code:
            continue
        m = _ITEM.match(line)
        if m:
            number = int(m.group("num") or m.group("knum"))
            bold_number = bool(m.group("bold")) and not m.group("close")
            prefix = line[: m.start("body")].lstrip() if not bold_number else f"**{m.group('mark')} "
            numbered.append(Item(n, _indent(line), number, prefix, bold_number, m.group("body")))
            tags |= {"heading"} if m.group("head") else set()
            tags |= {"keyword"} if m.group("knum") else set()
            tags |= {"paren"} if m.group("mark").endswith(")") else set()
            continue
        b = _BULLET.match(line)
        if b and not line.lstrip().startswith("**"):
            bullets.append(Item(n, _indent(line), None, line[: b.start("body")].lstrip(), False, b.group("body")))
    for kind, found in (("numbered", numbered), ("bullets", [] if numbered else bullets)):
        if found:
            base = min(i.indent for i in found)
            top = [i for i in found if i.indent <= base + 1]
            if len(top) >= 3:
                return top, kind, tags
    return [], "", tags


def derive(text: str) -> Derived | None:
    """Split one answer; None when it is not list-style."""
    lines = text.replace("\r\n", "\n").split("\n")
    items, kind, tags = _items(lines)
    if not items:
        return None
    tags.add(kind)
    base = min(i.indent for i in items)
    starts = [i.line for i in items]
    # after the last item: its indented / sub-bullet lines, then the closing (the first top-level text line)
    last_end = len(lines)
    for n in range(items[-1].line + 1, len(lines)):
        line = lines[n]
        if line.strip() and _indent(line) <= base + 1 and not _BULLET.match(line):
            last_end = n
            break
    for k, item in enumerate(items):
        desc = _split_title(item)
        end = starts[k + 1] if k + 1 < len(items) else last_end
        body = lines[item.line + 1 : end]
        nxt = items[k + 1] if k + 1 < len(items) else None
        top_text = [s for s in body if s.strip() and _indent(s) <= base + 1 and not _BULLET.match(s)]
        if nxt is not None and nxt.number == 1 and top_text:  # a lead-in to a list that starts again
            tags.add("restart")
            body = [s for s in body if s not in top_text]
        elif top_text:
            tags.add("text_between")
        for s in body:
            if s.strip() and _indent(s) > base + 1:
                tags.add("indented")
            if (_BULLET.match(s) and kind == "numbered") or (_ITEM.match(s) and _indent(s) > base + 1):
                tags.add("sub_bullets")
        item.text = [desc, *body] if desc else body
    preamble = "\n".join(lines[: items[0].line]).strip()
    closing = "\n".join(lines[last_end:]).strip()
    titles = [_cut(i.title.replace("**", "").strip()) for i in items]
    tags |= {"long_title"} if any(t != i.title for t, i in zip(titles, items, strict=True)) else set()
    keys = [" ".join(t.lower().split()) for t in titles]
    blank = any(not lines[s - 1].strip() for s in starts[1:])
    tags |= {t for t, on in (
        ("blank_lines", blank), ("preamble", bool(preamble)), ("closing", bool(closing)),
        ("bold", any(i.title_bold for i in items)), ("duplicates", len(set(keys)) < len(keys)),
        ("many_points", len(items) > 10), ("truncated", not re.search(r"[.!?)\]\"'`*]\s*$", text)),
        ("colon", any(i.separator == "colon" for i in items)), ("dash", any(i.separator == "dash" for i in items)),
        ("sentence", any(i.separator == "sentence" for i in items)),
    ) if on}  # fmt: skip
    points = [{"title": t, "text": "\n".join(i.text).strip()} for t, i in zip(titles, items, strict=True)]
    list_words = sum(len(p["title"].split()) + len(p["text"].split()) for p in points)
    if list_words < 0.5 * len(text.split()):
        if kind == "bullets":
            return None
        tags.add("list_minor")
    skeleton = ("\n\n" if blank else "\n").join(_skeleton_line(i) for i in items)
    return Derived(sorted(tags, key=STYLE_TAGS.index), skeleton, points, preamble, closing)


def build(folder: Path) -> list[dict[str, Any]]:
    """Every list-style answer in ``folder``, in file then question order."""
    questions = {q["question_id"]: q for q in _jsonl(folder / "question.jsonl")}
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("answer_*.jsonl")):
        for answer in _jsonl(path):
            d = derive(answer["text"])
            if d is None:
                continue
            q = questions[answer["question_id"]]
            rows.append({
                "source_model": path.stem.removeprefix("answer_"), "question_id": answer["question_id"],
                "question": q["text"], "category": q["category"], "style": d.style, "skeleton": d.skeleton,
                "points": d.points, "normal": answer["text"], "preamble": d.preamble, "closing": d.closing,
            })  # fmt: skip
    return rows


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read(path: Path) -> list[dict]:
    """The derived rows of a corpus file such as ``tests/data/real_answers.jsonl``."""
    return _jsonl(path)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def shape(row: dict, count: Callable[[str], int]) -> dict[str, float]:
    """One answer's shape: points, their length spread and the single-user SoT bound."""
    lengths = [count(p["text"]) for p in row["points"]]
    mean = statistics.fmean(lengths)
    skeleton, normal = count(row["skeleton"]), count(row["normal"])
    return {
        "points": len(lengths),
        "cv": statistics.pstdev(lengths) / mean if mean else float("nan"),
        "longest_over_mean": max(lengths) / mean if mean else float("nan"),
        "bound": normal / (skeleton + max(lengths)),
        # the same bound over only what SoT writes (skeleton + points: no preamble or closing)
        "bound_list": (skeleton + sum(lengths)) / (skeleton + max(lengths)),
    }


def table(rows: list[dict], answers: dict[str, int], count: Callable[[str], int]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    models = sorted({r["source_model"] for r in rows})
    for model in [*models, "all"]:
        mine = [shape(r, count) for r in rows if model in ("all", r["source_model"])]
        cvs = [s["cv"] for s in mine if s["cv"] == s["cv"]]
        longest = [s["longest_over_mean"] for s in mine if s["longest_over_mean"] == s["longest_over_mean"]]
        bounds = [s["bound"] for s in mine]
        listed = [s["bound_list"] for s in mine]
        out.append({
            "source_model": model, "answers": answers.get(model, sum(answers.values())), "list_style": len(mine),
            "points_median": float(statistics.median(s["points"] for s in mine)), "cv_median": statistics.median(cvs),
            "longest_over_mean_median": statistics.median(longest), "bound_median": statistics.median(bounds),
            "bound_p10": _pct(bounds, 0.1), "bound_p90": _pct(bounds, 0.9),
            "bound_list_median": statistics.median(listed), "bound_list_p10": _pct(listed, 0.1),
        })  # fmt: skip
    return out


def _counter(tokenizer: str | None) -> tuple[Callable[[str], int], str]:
    if tokenizer is None:
        return (lambda s: len(s.split())), "whitespace words"
    if tokenizer == "tiny":  # the tiny test model's tokenizer, as tests/tiny_model.py builds it now
        import sys

        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import build_tokenizer

        fast = build_tokenizer()
        return (lambda s: len(fast.encode(s, add_special_tokens=False))), "tiny test model's tokenizer"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
    return (lambda s: len(tok.encode(s, add_special_tokens=False).ids)), f"tokenizer {Path(tokenizer).name}"


HEAD = ["source_model", "answers", "list_style", "points_median", "cv_median", "longest_over_mean_median"]
HEAD += ["bound_median", "bound_p10", "bound_p90", "bound_list_median", "bound_list_p10"]


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=ROOT.parent / "shared" / "data" / "real-answers")
    parser.add_argument("--out", type=Path, default=None, help="write the derived rows here (JSON lines)")
    parser.add_argument("--results", type=Path, default=RESULTS / "real_corpus.json")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="also count with a local folder's tokenizer.json, or 'tiny' (the tiny test model's)",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    if not (args.folder / "question.jsonl").is_file():
        parser.exit(2, f"error: {args.folder} has no question.jsonl (pass the real-answers folder)\n")
    rows = build(args.folder)
    if args.out is not None:
        with args.out.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    answers = {p.stem.removeprefix("answer_"): len(_jsonl(p)) for p in sorted(args.folder.glob("answer_*.jsonl"))}
    tables: dict[str, list[dict[str, object]]] = {}
    for tokenizer in [None] if args.tokenizer is None else [None, args.tokenizer]:
        count, unit = _counter(tokenizer)
        tables[unit] = table(rows, answers, count)
        print(f"\ntokens: {unit}\n" + " | ".join(HEAD))
        for s in tables[unit]:
            print(" | ".join(f"{s[h]:.2f}" if isinstance(s[h], float) else str(s[h]) for h in HEAD))
    styles: dict[str, int] = {}
    for r in rows:
        for t in r["style"]:
            styles[t] = styles.get(t, 0) + 1
    doc = {"source": "FastChat eval answers to the Vicuna-80 questions (Apache-2.0)",
           "bound": "all answer tokens / (skeleton tokens + longest point tokens)",
           "bound_list": "(skeleton + all point tokens) / (skeleton + longest point tokens)",
           "cv": "population std / mean of the points' text tokens, per answer", "tables": tables,
           "style_counts": styles}  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
