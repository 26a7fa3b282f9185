"""A random generator of list pieces against the skeleton reader (issue 22, rounds 5 and 6): crashes and misreads.

Lists: one of the styles below (numberings, bullets, keyword labels, ordinals, JSON, JSON Lines, YAML, definition
lists, tables), with or without a preamble, a closing, blank lines between items, text or bullets under items,
LF or CRLF, fed whole and in random chunks; a misread is titles other than the list's, or the early stop before
the last item's line. Noise: random pieces of all of them (and of broken JSON, comments, markers, odd characters)
cut anywhere; any exception is a crash (the reader runs inside a live answer). Run from the checkout's root:

    python -m tests.skeleton_fuzz --lists 3000 --noise 3000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import traceback
from collections import Counter
from collections.abc import Callable
from functools import partial

from sotrag.app.skeleton import parse_skeleton
from tests.skeleton_stream import stream_skeleton

TITLES = [
    "Keep a consistent schedule",
    "Limit screens before bed",
    "Avoid caffeine after noon",
    "Exercise early in the day",
    "Write down your worries",
    "Keep the bedroom cool",
    "Use the Pomodoro method",
    "Plan the week on Sunday",
    "Drink water in the morning",
    "Take short breaks",
    "Review your goals monthly",
    "Learn to say no",
]
DETAILS = ["It helps a lot.", "Studies agree.", "Start small and build up.", "Most people forget this."]
ROMAN = "\u2160\u2161\u2162\u2163\u2164\u2165\u2166\u2167\u2168\u2169"
ORDINALS = ["First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth"]
SENTENCE_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]

# One line per item: {n} the number, {t} the title, {d} a detail, {r} a Unicode Roman numeral, {o} an ordinal word,
# {s} a sentence ordinal, {tl} the title with a small first letter. (min items, bullets?)
LINE_STYLES: dict[str, tuple[str, int, bool]] = {
    "dot": ("{n}. {t}", 1, False),
    "paren": ("{n}) {t}", 1, False),
    "bold-inside": ("**{n}. {t}**", 1, False),
    "bold-label": ("{n}. **{t}**: {d}", 1, False),
    "heading": ("### {n}. {t}", 1, False),
    "step": ("Step {n}: {t}", 1, False),
    "arrow": ("{n} -> {t}", 1, False),
    "fat-arrow": ("{n} => {t}", 1, False),
    "rst": ("#. {t}", 1, False),
    "numero": ("\u2116{n}. {t}", 1, False),
    "indicator": ("{n}\u00ba {t}", 1, False),
    "nr": ("Nr. {n}: {t}", 1, False),
    "vietnamese": ("B\u01b0\u1edbc {n}: {t}", 1, False),
    "emoji-keyword": ("\U0001f539 **Step {n}:** {t}", 1, False),
    "keycap": ("{n}\ufe0f\u20e3 {t}", 1, False),
    "keyword-keycap": ("Step {n}\ufe0f\u20e3: {t}", 1, False),
    "spaced-paren": ("( {n} ) {t}", 1, False),
    "bracket-close": ("{n}] {t}", 1, False),
    "unicode-roman": ("{r}. {t}", 1, False),
    "korean": ("{n}\ub2e8\uacc4: {t}", 1, False),
    "clock": ("{n}. \u23f0 {t}", 1, False),
    "no-number": ("No. {n} {t}", 3, False),
    "ordinal": ("{o}, {tl}.", 3, False),
    "ordinal-sentence": ("The {s} step is to {tl}.", 3, False),
    "dash": ("- {t}", 1, True),
    "bullet-keyword": ("- **Day {n}:** {t}", 1, True),
    "yaml-title": ("- title: {t}", 1, True),
    "check": ("\u2705 {t}", 1, True),
    # (sixth round: marks main's reader did not read, entities and invisible characters around them)
    "angle": ("<{n}> {t}", 1, False),
    "section": ("\u00a7{n} {t}", 1, False),
    "superscript": ("{sup} {t}", 1, False),
    "tab": ("{n}\t{t}", 1, False),
    "pipe": ("{n} | {t}", 1, False),
    "asciidoc": (". {t}", 1, False),
    "bold-bracket": ("**[{n}]** {t}", 1, False),
    "bold-number": ("**{n}** {t}", 1, False),
    "bold-italic": ("***{n}. {t}***", 1, False),
    "entity-space": ("{n}.&nbsp;{t}", 1, False),
    "invisible": ("\u200b{n}.\u200d {t}\u00ad", 1, False),
    "bare": ("{n} {t}", 3, False),
    "heading-bare": ("## {n} {t}", 3, False),
}
SUPERSCRIPTS = "\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
PREAMBLES = [
    "",
    "Sure! Here's a skeleton:\n\n",
    "Here is the outline:\n",
    "<think>\nPlan: 1. x\n</think>\n\n",
    "## Skeleton\n\n",
    "**Outline**\n\n",
    "Great question. Sleep matters for memory and mood.\n\n",
]
CLOSINGS = [
    "",
    "\nI hope this helps!\n",
    "\nLet me know if you want more.\nGood luck!\n",
    "\nHope this helps.\n",
    "\nThese steps work together. Start with one.\n\nGood luck!\n",
    "\n---\n\n**Note:** adjust as needed.\n",
]


def _line_list(rnd: random.Random, style: str, titles: list[str]) -> str:
    """A list in one of ``LINE_STYLES``, with blank lines, text or bullets under items at random."""
    fmt, _, bullets = LINE_STYLES[style]
    sep = rnd.choice(["\n", "\n\n"])
    held = ("ordinal", "ordinal-sentence", "no-number", "bare", "heading-bare")
    under = rnd.choice(["", "", "text", "bullets"]) if style not in held else ""
    plain = style in (*held, "yaml-title") or "{d}" in fmt or "**" in fmt
    deco = "{t}" if plain else rnd.choice(["{t}", "**{t}**", "**{t}**: {d}", "{t} - {d}", "{t} \u2014 {d}", "*{t}*"])
    lines = []
    for i, t in enumerate(titles, 1):
        d = rnd.choice(DETAILS)
        line = fmt.replace("{t}", deco).format(
            n=i,
            t=t,
            d=d,
            r=ROMAN[i - 1],
            o=ORDINALS[i - 1],
            s=SENTENCE_ORDINALS[i - 1],
            tl=t[0].lower() + t[1:],
            sup=SUPERSCRIPTS[i - 1],
        )
        if style in ("ordinal", "ordinal-sentence") and rnd.random() < 0.3:
            line += " " + d
        if under == "text":
            line += "\n   " + rnd.choice(DETAILS)
        elif under == "bullets":
            line += "\n" + ("    " if bullets else "   ") + "- " + rnd.choice(DETAILS).lower()
        if style == "yaml-title" and rnd.random() < 0.5:
            line += "\n  detail: " + rnd.choice(DETAILS)
        lines.append(line)
    return sep.join(lines) + "\n"


def _block_list(rnd: random.Random, style: str, titles: list[str]) -> str:
    """A list written as a structure: JSON (with comments), JSON Lines, YAML maps, a definition list, a table."""
    if style == "json":
        return json.dumps(titles, indent=rnd.choice([None, 2])) + "\n"
    if style == "json-comments":
        comment = rnd.choice(["  // {i}", "  # {i}", "  /* {i} */", " /* a\n  longer one */"])
        items = [f'  "{t}",' + comment.format(i=i) for i, t in enumerate(titles, 1)]
        return "[" + rnd.choice(["", " // the list", "\n  // the list"]) + "\n" + "\n".join(items) + "\n]\n"
    if style == "jsonl":
        rows = [{"point": i, "title": t, "why": rnd.choice(DETAILS)} for i, t in enumerate(titles, 1)]
        return "".join(json.dumps(r) + "\n" for r in rows)
    if style == "json-strings":  # JSON Lines of bare strings, a comma after each or not
        comma = rnd.choice(["", ","])
        return "".join(json.dumps(t) + comma + "\n" for t in titles)
    if style == "yaml-id":
        return "".join(f"- id: {i}\n  title: {t}\n  detail: x\n" for i, t in enumerate(titles, 1))
    if style == "definition":
        return rnd.choice(["\n", "\n\n"]).join(f"{t}\n: {rnd.choice(DETAILS)}" for t in titles) + "\n"
    return "| # | Point |\n|---|---|\n" + "".join(f"| {i}\ufe0f\u20e3 | {t} |\n" for i, t in enumerate(titles, 1))


BLOCK_STYLES = ["json", "json-comments", "jsonl", "json-strings", "yaml-id", "definition", "table"]


def a_list(rnd: random.Random) -> tuple[str, str, list[str]]:
    """(style, text, titles) of a random list with a random preamble and closing."""
    style = rnd.choice([*LINE_STYLES, *BLOCK_STYLES])
    low = LINE_STYLES[style][1] if style in LINE_STYLES else 2
    titles = rnd.sample(TITLES, rnd.randint(max(low, 2), 8))
    body = _line_list(rnd, style, titles) if style in LINE_STYLES else _block_list(rnd, style, titles)
    text = rnd.choice(PREAMBLES) + body + rnd.choice(CLOSINGS)
    if rnd.random() < 0.15 and style not in BLOCK_STYLES:  # the list in a plain or markdown fence
        text = "```" + rnd.choice(["", "markdown"]) + "\n" + body + "```\n" + rnd.choice(CLOSINGS)
    if rnd.random() < 0.3:
        text = text.replace("\n", "\r\n")
    if rnd.random() < 0.2:
        text = text.rstrip("\r\n")
    return style, text, titles


def check_list(rnd: random.Random, text: str, titles: list[str]) -> str | None:
    """What is wrong with the reading of ``text``, or None."""
    got = parse_skeleton(text, max_points=20)
    if got != titles:
        return f"whole: {got}"
    start = text.lower().rfind(titles[-1].lower()[1:])
    ends = [i for i in (text.find(c, start) for c in "\n\r") if i >= 0]
    end = min(ends, default=len(text))
    points, ended = stream_skeleton(text, rnd.randrange(10**6), max_points=20, max_chunk=rnd.choice([1, 5, 16, 64]))
    if points != titles:
        return f"streamed: {points}"
    if ended is not None and ended <= end:
        return f"early stop at {ended}, before {end}"
    return None


NOISE = [
    "[",
    "]",
    "{",
    "}",
    '"',
    "'",
    ",",
    "//",
    "/*",
    "*/",
    "#",
    ":",
    ": ",
    "- ",
    "* ",
    "1. ",
    "#. ",
    "No. 1 ",
    "1 -> ",
    "\u2116",
    "\u00ba",
    "\u2160.",
    "1\ufe0f\u20e3",
    "| ",
    "|---|",
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    "  ",
    "\t",
    "**",
    "<think>",
    "</think>",
    "<li>",
    "</ol>",
    "```",
    "```json\n",
    "~ ",
    "- id: 1\n",
    "title: ",
    "First, ",
    "Finally, ",
    "The first step is to ",
    "The next step is ",
    "I hope this helps.",
    "\\",
    "\u200b",
    "\ufeff",
    "\u2028",
    "<|im_end|>",
    '{"title": "A"}',
    '{"a": [1, {"b": "c"}]}',
    "\n[\n",
    "\n{\n",
    "\n[ // c\n",
    "\n{ /* c\n",
    "\n- title: ",
    "<point>",
    "</point>",
    "<step n=1>",
    "x" * 30,
    "Keep a schedule",
    "\u3001",
    "\uff08\u4e00\uff09",
]


def noise(rnd: random.Random) -> str:
    """Random pieces of every style, broken JSON and odd characters, with random list texts cut anywhere."""
    parts = [rnd.choice(NOISE) for _ in range(rnd.randint(1, 60))]
    if rnd.random() < 0.5:
        text = a_list(rnd)[1]
        a, b = sorted(rnd.randrange(len(text) + 1) for _ in range(2))
        parts.insert(rnd.randrange(len(parts) + 1), text[a:b])
    if rnd.random() < 0.2:
        parts.append("".join(chr(rnd.randrange(32, 0x2FFFF)) for _ in range(20)))
    text = "".join(parts)
    if rnd.random() < 0.5:  # a list with characters deleted, doubled or replaced by a noise piece
        chars = list(a_list(rnd)[1])
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(len(chars))
            chars[i] = rnd.choice(["", chars[i] * 2, rnd.choice(NOISE)])
        text = "".join(chars)
    return text


def _read_streamed(text: str, seed: int) -> None:
    stream_skeleton(text, seed, max_points=10, max_chunk=7)


def _read_whole(text: str) -> None:
    parse_skeleton(text)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--lists", type=int, default=3000)
    args.add_argument("--noise", type=int, default=3000)
    args.add_argument("--seed", type=int, default=1)
    a = args.parse_args()
    rnd = random.Random(a.seed)
    wrong: Counter[str] = Counter()
    total: Counter[str] = Counter()
    examples: dict[str, tuple[str, str]] = {}
    crashes: list[tuple[str, str]] = []

    def guarded(text: str, run: Callable[[], str | None]) -> str | None:
        try:
            return run()
        except Exception:  # any exception is a crash to report
            crashes.append((text, traceback.format_exc(limit=3)))
            return "crash"

    for _ in range(a.lists):
        style, text, titles = a_list(rnd)
        total[style] += 1
        problem = guarded(text, partial(check_list, rnd, text, titles))
        if problem:
            wrong[style] += 1
            examples.setdefault(style, (text, problem))
    for _ in range(a.noise):
        text = noise(rnd)
        guarded(text, partial(_read_streamed, text, rnd.randrange(9)))
        guarded(text, partial(_read_whole, text))
    print(f"lists: {sum(wrong.values())} of {a.lists} misread; noise: {a.noise} texts; crashes: {len(crashes)}")
    for style in sorted(wrong):
        text, problem = examples[style]
        print(f"  {style}: {wrong[style]} of {total[style]}, e.g. {text!r}\n    {problem}")
    for text, trace in crashes[:5]:
        print(f"  crash on {text!r}\n{trace}")


if __name__ == "__main__":
    main()
