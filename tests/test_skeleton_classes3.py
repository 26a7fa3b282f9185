"""List styles a third adversarial probe found misread (issue 22), one group per class, read whole and streamed.

As in ``test_skeleton_classes.py``: each example stands for its class, every answer is read whole and fed in
random chunks (CR LF line ends too), the points are the listed titles, and the early stop never comes before
the last point's line is complete. Look-alikes that must stay what they were sit next to each class.
"""

from __future__ import annotations

import pytest

from sotrag.app.skeleton import SkeletonParser, parse_heading, parse_skeleton
from sotrag.app.skeleton_lines import inline_items
from tests.skeleton_stream import check_read_whole_and_streamed
from tests.skeleton_stream import numbered_lines as _lines

T = ["Keep a consistent schedule", "Limit screens before bed", "Avoid caffeine after noon"]


ANSWERS = [
    # a reasoning block before the answer (DeepSeek-R1, Qwen3, QwQ): its numbered steps are no points
    pytest.param(
        "<think>\nThe user wants sleep tips. Let me list them:\n1. schedule\n2. screens\nOkay, three points.\n"
        "</think>\n\n" + _lines("{n}. {t}", T),
        T,
        id="think-numbered-steps",
    ),
    pytest.param(
        "<think>\nLet me think.\n\n**1. Schedule** is the most important.\n2. Screens matter.\n\nThat should do.\n"
        "Now I will write it.\n</think>\n" + _lines("{n}. **{t}**", T),
        T,
        id="think-closing-inside",
    ),
    pytest.param("<think>1. schedule, then screens</think>\n" + _lines("{n}. {t}", T), T, id="think-one-line"),
    pytest.param(
        "<think>Plan it.</think>1. " + T[0] + "\n" + _lines("{n}. {t}", T)[3 + len(T[0]) :],
        T,
        id="think-list-on-its-line",
    ),
    pytest.param("<thinking>\n1. think\n2. more\n</thinking>\n" + _lines("{n}) {t}", T), T, id="thinking-tag"),
    pytest.param("<reasoning>\n- a\n- b\n</reasoning>\n" + _lines("- {t}", T), T, id="reasoning-tag-bullets"),
    # "</think>" alone: the chat template opened the block in the prompt; what came before it was reasoning
    pytest.param(
        "Okay, the user wants tips.\n1. schedule\n2. screens\nGood.\n</think>\n\n" + _lines("{n}. {t}", T),
        T,
        id="think-close-alone",
    ),
    # a letter numbering headings or bold labels ("## A. T", "**A.** T", "**A. T**"): the letter is no part of the title
    pytest.param(
        _lines("## {n}. {t}\nText.", T, "\n\n").replace("1.", "A.").replace("2.", "B.").replace("3.", "C."),
        T,
        id="letter-headings",
    ),
    pytest.param("**A.** " + T[0] + "\n**B.** " + T[1] + "\n**C.** " + T[2] + "\n", T, id="letter-bold"),
    pytest.param("**a) " + T[0] + "**\nText.\n\n**b) " + T[1] + "**\nText.\n", T[:2], id="letter-bold-title"),
    pytest.param(
        "### A. Evening\n- dim the lights\n- no phone\n\n### B. Morning\n- get sunlight\n",
        ["Evening", "Morning"],
        id="letter-headings-over-bullets",
    ),
    # a heading's closing hashes ("## 1. T ##") are no part of its title
    pytest.param(_lines("## {n}. {t} ##", T), T, id="heading-closing-hashes"),
    pytest.param(_lines("### {t} ###\nText.", T, "\n\n"), T, id="heading-closing-hashes-unnumbered"),
    # quotes around a whole title, or a word count a model wrote after it, are no part of it (quotes inside are)
    pytest.param(_lines('{n}. "{t}"', T), T, id="quoted-titles"),
    pytest.param(_lines("{n}. \u201c{t}.\u201d", T), T, id="curly-quoted-sentences"),
    pytest.param(_lines("{n}. {t} (4 words)", T), T, id="word-counts"),
    pytest.param(_lines("- {t} [4 words]", T), T, id="word-counts-bullets"),
    pytest.param(
        '1. Say "no" more often\n2. "No" means no\n3. Read "Deep Work"\n',
        ['Say "no" more often', '"No" means no', 'Read "Deep Work"'],
        id="quotes-inside-stay",
    ),
    # a dash after the number inside the bold ("**Tip 1 –** T", "**1 —** T"), a bullet before a bold number
    # ("- **1. T**"; under a numbered item it stays a sub-item, as "- 1. T" does)
    pytest.param(_lines("**Tip {n} \u2013** {t}", T), T, id="bold-keyword-dash"),
    pytest.param(_lines("**{n} \u2014** {t}", T), T, id="bold-number-dash"),
    pytest.param(_lines("- **{n}. {t}**", T), T, id="bullet-bold-number"),
    pytest.param(_lines("* **{n}.** {t}: text.", T), T, id="bullet-bold-number-only"),
    pytest.param("1. {}\n- **1. a sub-step**\n2. {}\n".format(*T), T[:2], id="bullet-bold-number-under-number"),
    # a double hyphen as a dash between a title and its description (after a bold title it was read before too)
    pytest.param(_lines("{n}. {t} -- more about it.", T), T, id="double-hyphen"),
    pytest.param(_lines("{n}. **{t}** -- more about it.", T), T, id="double-hyphen-bold"),
    # a number alone in a heading or in bold, without "." or ")" ("### 1", "**1**"), the title on the next line
    pytest.param(_lines("### {n}\n{t}\n\nText.", T, "\n\n"), T, id="heading-number-alone"),
    pytest.param(_lines("**{n}**\n**{t}**: text.", T, "\n\n"), T, id="bold-number-alone"),
    pytest.param(
        _lines("## **{n}**\n\n{t}", T, "\n\n") + "\nHope this helps.\nBye.\n", T, id="heading-bold-number-alone"
    ),
    # a recap after the points ("### Summary", "In summary:", "**Key takeaways:**") repeats them: no new points
    pytest.param(
        _lines("### {n}. {t}\nText.", T, "\n\n") + "\n### Summary\n1. Schedule\n2. Screens\n",
        T,
        id="recap-heading-list",
    ),
    pytest.param(_lines("{n}. {t}", T) + "\nIn summary:\n1. Be consistent\n2. Less light\n", T, id="recap-lead-in"),
    pytest.param(
        _lines("{n}. **{t}**: text.", T) + "\n**Key takeaways:**\n1. Consistency\n2. Darkness\n",
        T,
        id="recap-bold-label",
    ),
    pytest.param(_lines("{n}. {t}", T) + "\n**TL;DR**\n1. Sleep more\n", T, id="recap-tldr"),
    # (guards: a label with text after it, or one right under an item, is the item's)
    pytest.param(_lines("## {n}. {t}\n\n**Key takeaway:** same time.", T, "\n\n"), T, id="takeaway-label-in-items"),
    pytest.param(_lines("{n}. **{t}**\n**Summary**\nIt helps.", T, "\n\n"), T, id="summary-label-under-items"),
    # a bullet list with bold labels under its items, then a recap: the labels are no list of headings
    pytest.param(
        "- {}\n**Why:** It works.\n\n- {}\n**Why:** It helps.\n\n## Summary\n1. a\n2. b\n".format(*T),
        T[:2],
        id="recap-after-bullets",
    ),
    # (a guard: a list of headings keeps its "Conclusion" heading as a point)
    pytest.param(
        "## Evening\n- dim lights\n- no phone\n\n## Morning\n- sunlight\n\n## Conclusion\n- routine\n",
        ["Evening", "Morning", "Conclusion"],
        id="summary-among-headings",
    ),
    # text right under an item (no blank line: markdown's lazy continuation) is the item's, however many lines,
    # and whatever it is: a sentence and a bullet, a quote, italics, an example, a note in parentheses
    pytest.param(
        "1. {}\n2. {}\nBlue light delays melatonin.\n- Use night mode\n3. {}\n".format(*T), T, id="under-bullet"
    ),
    pytest.param(
        "1. {}\n2. {}\n> Blue light delays melatonin.\n> Use night mode.\n3. {}\n".format(*T), T, id="under-quote"
    ),
    pytest.param(
        "1. {}\n2. {}\n*Blue light delays melatonin.*\n*Use night mode.*\n3. {}\n".format(*T), T, id="under-italics"
    ),
    pytest.param(
        "1. {}\n2. {}\nExample: stop at 9 pm.\nExample: read a book.\n3. {}\n".format(*T), T, id="under-examples"
    ),
    pytest.param(
        "1. {}\n2. {}\n(e.g., stop at 9 pm.)\n(Or read a book.)\n3. {}\n".format(*T), T, id="under-parentheses"
    ),
    # an indented quote after a blank line is the item's too (its indentation stays when the quote marks go)
    pytest.param(
        "1. {}\n2. {}\n\n   > Blue light delays melatonin.\n   > Use night mode.\n\n3. {}\n".format(*T),
        T,
        id="indented-quote",
    ),
    # a bullet right under a sentence: the sentence led in to it, it ends nothing
    pytest.param(
        "1. {}\n2. {}\n\nBlue light delays melatonin.\n- Use night mode\n- Dim the lights\n\n3. {}\n".format(*T),
        T,
        id="sentence-then-bullets",
    ),
    # a thematic break or an image after a sentence between items confirms no end
    pytest.param("1. {}\n2. {}\n\nThis is key.\n\n---\n\n3. {}\n".format(*T), T, id="rule-after-sentence"),
    pytest.param("1. {}\n2. {}\n\nThis is key.\n\n* * *\n\n3. {}\n".format(*T), T, id="stars-rule-after-sentence"),
    pytest.param(
        "1. {}\n2. {}\n\nThis is key.\n\n![chart](chart.png)\n\n3. {}\n".format(*T), T, id="image-after-sentence"
    ),
    # a sentence right under an item, then one after a blank line: one sentence between the items, not two
    pytest.param(
        "1. {}\n2. {}\nNote: optional.\n\nThis one matters most.\n\n3. {}\n".format(*T), T, id="under-then-sentence"
    ),
    pytest.param(
        "**1.** {}\n**2.** {}\n(Side note.)\n\n> Quote after a blank.\n\n**3.** {}\n".format(*T),
        T,
        id="under-then-quote",
    ),
    # (a guard: the whole answer after the skeleton, a sentence right under its last item, still ends it)
    pytest.param("1. {}\n2. {}\n3. {}\nNow the full answer.\n1. Not a point\n".format(*T), T, id="restart-after-under"),
    # a list written on one line ("1. A 2. B 3. C", as weak models write a skeleton), with text after each title too
    pytest.param("1. {} 2. {} 3. {}\n".format(*T), T, id="inline"),
    pytest.param("Here are some tips: 1. {}. 2. {}. 3. {}.\n".format(*T), T, id="inline-after-lead-in"),
    pytest.param(
        "1) {}. It anchors you. 2) {}. 3) {}.\n\nHope this helps!\nBye.\n".format(*T),
        [T[0] + ". It anchors you", *T[1:]],
        id="inline-sentences",
    ),
    pytest.param(
        "1. {} 2. {}\n3. {}\n".format(*T),
        ["Keep a consistent schedule 2. Limit screens before bed", T[2]],
        id="inline-one-more",
    ),
    # a list whose indentation drifts by a space at each item ("1." " 2." "  3."): the next number 2 spaces deeper,
    # with nothing under the item above, goes on with the list
    pytest.param("1. {}\n 2. {}\n  3. {}\n".format(*T), T, id="indent-drift"),
    pytest.param("  1. {}\n  2. {}\n    3. {}\n".format(*T), T, id="indent-drift-indented-list"),
    # (guards: a sub-list 2 spaces deep stays one, and 3 spaces deep is a sub-item whatever its number)
    pytest.param("1. {}\n  1. a\n  2. b\n2. {}\n".format(*T), T[:2], id="two-space-sub-list"),
    pytest.param("1. {}\n   2. a\n2. {}\n".format(*T), T[:2], id="three-space-sub-item"),
    # an end-of-turn token written out as text (a template that does not hide it): the answer ends there
    pytest.param(_lines("{n}. {t}", T).rstrip("\n") + "<|im_end|>", T, id="im-end"),
    pytest.param(_lines("{n}. {t}", T).rstrip("\n") + "</s>", T, id="llama2-eos"),
    pytest.param(
        _lines("{n}. {t}", T[:2]) + f"3. {T[2]}<|eot_id|><|start_header_id|>user\n1. Next question\n",
        T,
        id="eot-then-more",
    ),
    pytest.param(_lines("{n}. {t}", T) + "<end_of_turn>\n<start_of_turn>user\n4. More\n", T, id="gemma-end-of-turn"),
    # (a guard: "</s>" closing a strikethrough is text)
    pytest.param(
        "1. Use <s>old</s> for deleted text\n2. Mark it\n",
        ["Use <s>old</s> for deleted text", "Mark it"],
        id="strikethrough",
    ),
    # keyword labels in more languages, and a Chinese, Japanese or Korean title ended by an ASCII colon
    pytest.param("Шаг 1: Подготовка\nШаг 2: Смешивание\n", ["Подготовка", "Смешивание"], id="kw-ru"),
    pytest.param("Dica 1: Durma cedo\nDica 2: Evite telas\n", ["Durma cedo", "Evite telas"], id="kw-pt"),
    pytest.param("Stap 1: Voorbereiden\nStap 2: Mengen\n", ["Voorbereiden", "Mengen"], id="kw-nl"),
    pytest.param("Adım 1: Hazırlık\nAdım 2: Karıştırma\n", ["Hazırlık", "Karıştırma"], id="kw-tr"),
    pytest.param("Krok 1: Przygotuj\nKrok 2: Wymieszaj\n", ["Przygotuj", "Wymieszaj"], id="kw-pl"),
    pytest.param(
        "1. 规律作息:每天同一时间睡觉\n2. 减少屏幕:睡前一小时\n", ["规律作息", "减少屏幕"], id="cjk-ascii-colon"
    ),
    # (a guard: a Latin title keeps "Time:10:30", a colon without a space)
    pytest.param("1. Wake at Time:10:30\n2. Sleep\n", ["Wake at Time:10:30", "Sleep"], id="latin-colon-no-space"),
]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "titles"), ANSWERS)
def test_list_style_classes_are_read_whole_and_streamed(text: str, titles: list[str], crlf: bool) -> None:
    check_read_whole_and_streamed(text, titles, crlf=crlf)


def test_a_reasoning_block_never_stops_the_skeleton() -> None:
    """A tight list, a closing and more prose inside the block would end a list outside it: inside, nothing
    counts, so the early stop waits for the answer's own list."""
    parser = SkeletonParser()
    parser.feed("<think>\n1. schedule\n2. screens\n\nThat works.\nNow I will write the answer.\n")
    assert not parser.list_ended and parser.points == []
    parser.feed("</think>\n\n1. Keep a consistent schedule\n2. Limit screens\n\nHope this helps!\nBye.\n")
    assert parser.list_ended and parser.points == ["Keep a consistent schedule", "Limit screens"]


def test_an_empty_reasoning_block_is_no_text() -> None:
    """(A guard, read right before the class was fixed too: Qwen3 with thinking off writes an empty block.)"""
    check_read_whole_and_streamed("<think>\n\n</think>\n\n" + _lines("{n}. {t}", T), T, crlf=True)


def test_an_unclosed_reasoning_block_gives_no_points() -> None:
    """Cut by the token limit while still reasoning: no point, so the pipeline asks again."""
    assert parse_skeleton("<think>\n1. schedule\n2. screens\n3. caffeine\n") == []


def test_a_heading_or_label_starting_with_a_word_keeps_it() -> None:
    """Only a letter with its "." or ")" numbers a heading: "A Guide" and "**A** great idea" are words."""
    assert parse_heading("## A Guide to sleep") == (2, "A Guide to sleep")
    assert parse_heading("## A. Guide to sleep") == (2, "Guide to sleep")
    assert parse_heading("**A** great idea") is None
    assert parse_heading("**B.** Sleep: more of it") == (7, "Sleep")


def test_a_plain_number_alone_stays_text() -> None:
    """(A guard, read so before too.) Only a heading or bold makes a bare number a marker: "1" alone is text."""
    assert parse_skeleton("1\nKeep a consistent schedule\n2\nLimit screens\n") == []
    assert parse_skeleton("### 2024\nA good year\n### 2025\nA better one\n") == ["2024", "2025"]


def test_a_recap_heading_ends_the_list_at_once() -> None:
    parser = SkeletonParser()
    parser.feed(_lines("{n}. {t}", T) + "\n## Summary\n")
    assert parser.list_ended and parser.points == T
    assert parse_skeleton("## Summary\n" + _lines("{n}. {t}", T)) == T  # a summary heading first is a preamble


def test_a_closing_after_a_blank_line_still_ends_the_list() -> None:
    """What the lazy-continuation rule keeps: a blank line, a closing and a line after it end a tight list; a rule
    after the list does not hide it."""
    for text in (
        _lines("{n}. {t}", T) + "\nHope this helps!\nBye.\n",
        _lines("{n}. {t}", T) + "\n---\n\nHope this helps!\nLet me know.\n",
    ):
        parser = SkeletonParser()
        parser.feed(text)
        assert parser.list_ended and parser.points == T, text
    for text in ("Hope this helps!\nLet me know.\n", "Hope this helps!\n\nLet me know.\n"):
        parser = SkeletonParser()
        parser.feed(_lines("{n}. {t}", T) + text)
        assert not parser.list_ended  # (right under the last item: its text, as far as markdown can tell)


def test_only_a_run_of_numbers_in_order_splits_a_line() -> None:
    """Two more numbers in order, numbered the same way, after a numbered start: a number or two inside a title
    ("chapter 2.", "2.5", "2 cups", "6.") stay in it."""
    assert inline_items("1. Read chapter 2. Then rest") == ["1. Read chapter 2. Then rest"]
    assert inline_items("1. Raise it 2.5 times 3. Stop") == ["1. Raise it 2.5 times 3. Stop"]
    assert inline_items("1. Mix 2 cups 3. Bake") == ["1. Mix 2 cups 3. Bake"]
    assert inline_items("1. Mix 2) Bake 3. Serve") == ["1. Mix 2) Bake 3. Serve"]
    assert inline_items("See 1. Mix 2. Bake 3. Serve") == ["See 1. Mix 2. Bake 3. Serve"]  # (no lead-in colon)
    assert inline_items("Note: 2. Mix 3. Bake 4. Serve") == ["Note: 2. Mix 3. Bake 4. Serve"]  # (after one, from 1)
    assert inline_items("  4. Wake at 6. 5. Eat. 6. Go.") == ["  4. Wake at 6.", "  5. Eat.", "  6. Go."]


def test_an_end_of_turn_token_ends_the_list() -> None:
    parser = SkeletonParser()
    parser.feed(_lines("{n}. {t}", T) + "<|im_end|>\n")
    assert parser.list_ended and parser.points == T


def test_decisions_of_the_third_round() -> None:
    """What the reader decides where a style is ambiguous (docs/BENCHMARKS.md, known limits)."""
    # a number that repeats the last one after a closing is taken for a restart: the early stop, no point
    parser = SkeletonParser()
    parser.feed("1. Plan\n2. Focus\n\nThis is crucial.\n\n2. Rest\n")
    assert parser.list_ended and parser.finish() == ["Plan", "Focus"]
    # (ordinal words number a list since the fourth round: tests/test_skeleton_classes4.py)
    # a bold single letter with a dot numbers its item
    assert parse_skeleton("**A.** Mix\n**B.** Bake\n") == ["Mix", "Bake"]
    # (setext headings and a fraction's numbering are read since the fourth round: test_skeleton_classes4.py)
    # a lone "</think>" restarts the reading, but what was handed out before it stays handed out
    parser = SkeletonParser()
    assert parser.feed("1. schedule\n2. screens\n") == ["schedule", "screens"]
    assert parser.feed("</think>\n1. Plan\n2. Focus\n") == ["Plan", "Focus"]
    assert parser.finish() == ["Plan", "Focus"]
