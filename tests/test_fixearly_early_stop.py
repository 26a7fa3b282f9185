"""The skeleton's early stop when the model goes on from its skeleton to its whole answer (no engine needed).

A model often writes the skeleton, then the answer itself: the list again with the same titles (numbered, in bold,
as bullets, bold labels or headings), after an "Answer" label, a heading or "Now, let me expand on each point",
or as prose paragraphs. The skeleton request should stop there, at the latest before the answer's second item,
not decode to its token limit; and it must never stop a list that goes on (blank lines, a sentence, sub-bullets
or a lead-in between items, a second half numbered from 1 again with titles of its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotrag.app.pipeline import _enough_points
from sotrag.app.skeleton import SkeletonParser, parse_skeleton

SKELETON = "1. Budget\n2. Cook at home\n3. Cancel subscriptions\n"
TITLES = ["Budget", "Cook at home", "Cancel subscriptions"]
ANSWER = (
    "1. Budget: Track every expense for a month and see where it goes.\n"
    "2. Cook at home: Meals out cost three times more than cooking.\n"
    "3. Cancel subscriptions: Drop what you do not use every month.\n"
)
PROSE = (
    "Budgeting is the first step. Track every expense for a month.\n\n"
    "Cooking at home saves a lot. Meals out cost three times {word} than cooking.\n\n"
    "Cancel the subscriptions you do not use.\n"
)
BOLD_NUMBERED = "".join(f"**{i}. {t}**: {d}.\n" for i, (t, d) in enumerate(zip(TITLES, "ABC", strict=True), 1))


def _first_stop(text: str, chunk: int = 2, min_points: int = 3) -> tuple[int | None, list[str]]:
    """Feed ``text`` as the pipeline does; where the skeleton request is stopped (None: never) and its points."""
    parser = SkeletonParser(max_points=10)
    for i in range(0, len(text), chunk):
        parser.feed(text[i : i + chunk])
        if _enough_points(parser, min_points):
            return min(i + chunk, len(text)), parser.finish(truncated=True)
    return None, parser.finish()


def _second_item_end(text: str, answer: str) -> int:
    """Where the answer's second item's line ends in ``text`` (the answer is its last part)."""
    start = len(text) - len(answer)
    first = answer.index("\n", answer.index(TITLES[0]))
    second = answer.index("\n", answer.index(TITLES[1], first))
    return start + second


LAYOUTS = {
    "numbered answer": ("\n", ANSWER),
    "no blank line": ("", ANSWER),
    "Answer label": ("\nAnswer:\n", ANSWER),
    "bold Answer": ("\n**Answer**\n\n", ANSWER),
    "markdown heading": ("\n## Detailed answer\n\n", ANSWER),
    "let me expand": ("\nNow, let me expand on each point:\n\n", ANSWER),
    "lead-in": ("\nHere are some tips to save money:\n\n", ANSWER),
    "bold numbering": ("\n", BOLD_NUMBERED),
    "bold labels": ("\n", "**Budget**: Track it.\n\n**Cook at home**: Cook more.\n\n**Cancel subscriptions**: No.\n"),
    "headings": ("\n", "### Budget\nTrack it.\n\n### Cook at home\nCook.\n\n### Cancel subscriptions\nDrop.\n"),
    "bullets": ("\n", "- **Budget**: Track it.\n- **Cook at home**: Cook.\n- **Cancel subscriptions**: Drop.\n"),
    # the recorded GPT-3.5 habit: a lead-in, then each item its title and its text in one sentence run
    "sentences": (
        "\nThere are a few ways to save money:\n\n",
        "1. Budget. Track every expense for a month.\n2. Cook at home. Meals out cost more.\n"
        "3. Cancel subscriptions. Drop what you do not use.\n",
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_skeleton_then_the_whole_answer_stops_before_its_second_item(layout: str) -> None:
    between, answer = LAYOUTS[layout]
    text = SKELETON + between + answer
    for chunk in (1, 2, 5):
        stop, points = _first_stop(text, chunk)
        assert stop is not None and stop <= _second_item_end(text, answer), (layout, chunk, stop)
        assert points == TITLES
    assert parse_skeleton(text) == TITLES


def test_the_stop_comes_once_the_restarted_title_and_its_colon_are_written() -> None:
    """The restarted item is no point: the request stops before the rest of its line is decoded."""
    for answer in (ANSWER, BOLD_NUMBERED, "**Budget**: Track every expense for a month and see where it goes.\n"):
        text = SKELETON + "\n" + answer
        stop, points = _first_stop(text, chunk=1)
        assert stop == text.index(": ", len(SKELETON)) + 2, answer
        assert points == TITLES
    text = SKELETON + "\n**1. Budget: Track every expense**\n"  # (the bold title may still be "Budget: Track ...")
    parser = SkeletonParser()
    parser.feed(text[:-5])
    assert not parser.list_ended


@pytest.mark.parametrize("word", ["more", "other", "also", "then", "next", "however", "beyond", "triple"])
def test_prose_paragraphs_with_common_words_end_the_list(word: str) -> None:
    """Two paragraphs of prose after the list end it, whatever common words they hold inside their sentences."""
    text = SKELETON + "\n" + PROSE.format(word=word)
    stop, points = _first_stop(text, chunk=1)
    second_paragraph_end = text.index("cooking.\n") + len("cooking.\n")
    assert stop is not None and stop <= second_paragraph_end, word
    assert points == TITLES


@pytest.mark.parametrize(
    "text",
    [
        # a lead-in in one short sentence, or one that starts with its word, still leads on
        "1. Sleep\n2. Diet\n\nThere are also other habits.\n\nThey help too.\n\n3. Exercise\n",
        "1. Sleep\n2. Diet\n\nThose are the basics. Next come the harder ones.\n\nThey take time.\n\n3. Exercise\n",
        # a second half numbered from 1 again, with titles of its own, after a lead-in or a heading
        "1. Sleep\n2. Diet\n\nFor the mind, other habits count:\n\n1. Read daily\n2. Meditate\n",
        "1. Sleep\n2. Diet\n\n## The mind\n\n1. Read daily\n2. Meditate\n",
        # "expand the list" is no answer; a FAQ list with an answer under every question goes on
        "1. Sleep\n2. Diet\n\nLet me expand the list with two more:\n\n3. Read daily\n4. Meditate\n",
        "1. Why sleep?\n\n**Answer**\n\nIt heals.\n\n2. Why eat well?\n\n**Answer**\n\nIt fuels.\n\n3. Why move?\n",
        # headings over bullets that repeat the first heading's first detail
        "**Pros**\n- Cheap\n- Fast\n\n**Cons**\n- Cheap to break\n- Cheap\n\n**Verdict**\n- Buy\n",
        "**Request**\n- Send it\n- Wait\n**Response**\n- Read it\n",
        # "1." on every item, blank lines between
        "1. Sleep\n\n1. Diet\n\n1. Exercise\n",
    ],
)
def test_lists_that_go_on_never_stop_early(text: str) -> None:
    whole = parse_skeleton(text)
    for chunk in (1, 3, 7):
        parser = SkeletonParser(max_points=10)
        for i in range(0, len(text), chunk):
            parser.feed(text[i : i + chunk])
            assert not parser.list_ended, (text, i)
        assert parser.finish() == whole
    assert len(whole) >= 3


# -- properties ---------------------------------------------------------------------------------------------

_VOCABULARY = ["Budget", "Cook", "Sleep", "Plan", "Read", "Walk", "Save", "Rest", "Focus", "Water", "Learn", "Stretch"]
_titles = st.lists(
    st.lists(st.sampled_from(_VOCABULARY), min_size=1, max_size=3, unique=True).map(" ".join),
    min_size=2,
    max_size=6,
    unique_by=str.lower,
).filter(lambda ts: len({t.split()[0] for t in ts}) == len(ts))  # (no title the start of another's)
_DETAILS = ["Track every expense for a month.", "It costs more than you think, and it also helps.", "Then rest."]
SKELETON_STYLES = ["{n}. {t}", "{n}) {t}", "**{n}. {t}**", "### {n}. {t}", "Step {n}: {t}", "- {t}", "* **{t}**"]
NUMBERED_ANSWERS = ["{n}. {t}: {d}", "**{n}. {t}**: {d}", "{n}. **{t}**: {d}", "### {n}. {t}\n{d}", "{n}) {t} - {d}"]
OTHER_ANSWERS = ["**{t}**: {d}", "- **{t}**: {d}", "### {t}\n{d}", "**{t}**\n{d}", "## {t}\n\n{d}"]
BETWEEN = [
    "\n",
    "\n\n",
    "\nAnswer:\n",
    "\n**Answer:**\n\n",
    "\n## Detailed answer\n\n",
    "\nNow, let me expand on each point:\n\n",
    "\nHere is the full answer.\n\n",
]


@dataclass
class Written:
    text: str
    titles: list[str]
    second_end: int  # where the answer's second item's line ends


@st.composite
def skeleton_then_answer(draw: st.DrawFn) -> Written:
    titles = draw(_titles)
    style = draw(st.sampled_from(SKELETON_STYLES))
    answer_style = draw(st.sampled_from(NUMBERED_ANSWERS + OTHER_ANSWERS))
    # (a bullet, label or heading answer comes after a blank line: right under the list it is no sign of an end)
    between = draw(st.sampled_from([*BETWEEN, ""] if answer_style in NUMBERED_ANSWERS else BETWEEN))
    skeleton = "".join(style.format(n=n, t=t) + "\n" for n, t in enumerate(titles, 1))
    items = [answer_style.format(n=n, t=t, d=draw(st.sampled_from(_DETAILS))) for n, t in enumerate(titles, 1)]
    sep = draw(st.sampled_from(["\n", "\n\n"]))
    text = skeleton + between
    ends = []
    for item in items:
        text += item + "\n"
        ends.append(len(text) - 1)
        text += sep[1:]
    return Written(text, titles, ends[1])


@settings(max_examples=300, deadline=None)
@given(skeleton_then_answer(), st.integers(1, 5))
def test_property_skeleton_then_whole_answer_stops_before_the_answers_second_item(w: Written, chunk: int) -> None:
    stop, points = _first_stop(w.text, chunk, min_points=2)
    assert stop is not None and stop <= w.second_end, (stop, w.text)
    assert points == w.titles


_BETWEEN_ITEMS = [
    "",  # tight
    "\n",  # a blank line
    "\nThis costs more than you think, and it also helps.\n",  # one paragraph with common words
    "\nThose are the basics. Next come the other ones.\n",
    "\nThen there is more:\n",  # a lead-in
    "\nIt matters. There is more to do, though. Here are the rest:\n",
    "   - a detail under it\n   - another\n",  # sub-bullets
    "\n### Next part\n",  # a heading
    "\nLet me expand the list with more.\n",
]


@st.composite
def lists_that_go_on(draw: st.DrawFn) -> tuple[str, list[str], int]:
    """A numbered or bulleted list with anything of ``_BETWEEN_ITEMS`` between its items (and the numbering
    maybe from 1 again after a lead-in or a heading, with new titles). Returns the text, its titles, and where the
    last item's line ends."""
    titles = draw(_titles.filter(lambda ts: len(ts) >= 3))
    style = draw(st.sampled_from([*SKELETON_STYLES, "{n}. {t}: {d}"]))
    text, number, end = "", 1, 0
    for i, title in enumerate(titles):
        if i:
            between = draw(st.sampled_from(_BETWEEN_ITEMS))
            text += between
            if between.endswith(":\n") or "###" in between:
                number = draw(st.sampled_from([number, 1]))  # a second half may number from 1 again
        text += style.format(n=number, t=title, d=draw(st.sampled_from(_DETAILS))) + "\n"
        end = len(text) - 1
        number += 1
    return text + draw(st.sampled_from(["", "\nI hope this helps!\n"])), titles, end


@settings(max_examples=300, deadline=None)
@given(lists_that_go_on(), st.integers(1, 7))
def test_property_a_list_that_goes_on_never_stops_early(case: tuple[str, list[str], int], chunk: int) -> None:
    text, titles, end = case
    parser = SkeletonParser(max_points=10)
    for i in range(0, len(text), chunk):
        parser.feed(text[i : i + chunk])
        assert not parser.list_ended or i + chunk > end, (i, text)
    assert parser.finish() == titles
