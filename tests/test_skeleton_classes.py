"""List styles the reader once misread, one class per group (issue 22), read whole and streamed.

Each class was found by feeding the reader whole answers written in the styles real chat models use; each
example here stands for its class. Every answer is read whole and fed in random chunks (CR LF line ends too):
the points are the listed titles, and the early stop never comes before the last point's line is complete.
Look-alikes that must stay what they were sit next to each class (a decimal in a preamble, "2.1" under "2.").
"""

from __future__ import annotations

import pytest

from sotrag.app.skeleton import SkeletonParser, parse_heading, parse_line, parse_skeleton
from tests.skeleton_stream import check_read_whole_and_streamed
from tests.skeleton_stream import numbered_lines as _lines

T = ["Keep a regular schedule", "Make your room dark", "Avoid late caffeine", "Exercise during the day"]
ZH = ["保持规律作息", "保持房间黑暗", "避免咖啡因"]


ANSWERS = [
    # markdown auto-numbering: every item "1.", a sentence between items is no restart
    pytest.param(
        "1. Keep a regular schedule\n1. Make your room dark\n\nThis one matters most.\n\n"
        "1. Avoid late caffeine\n1. Exercise during the day\n",
        T,
        id="auto-numbered-aside",
    ),
    pytest.param(
        "**1.** Keep a regular schedule\n   - same time\n**1.** Make your room dark\n\nThat is a good one.\n\n"
        "**1.** Avoid late caffeine\n",
        T[:3],
        id="auto-numbered-bold-subs",
    ),
    pytest.param(
        "1. Keep a regular schedule\n1. Make your room dark\n1. Avoid late caffeine\n\nI hope this helps!\n\n"
        "1. **Keep a regular schedule**: go to bed at ten.\n",
        T[:3],
        id="auto-numbered-whole-answer-after",
    ),
    # a number alone on its line, the title on the next
    pytest.param(_lines("{n}.\n{t}", T[:3]), T[:3], id="number-alone"),
    pytest.param(_lines("{n})\n\n{t}: more about it.", T[:3], "\n\n"), T[:3], id="number-alone-blank"),
    pytest.param(
        _lines("**{n}.**\n**{t}**\nSome text.", T[:3], "\n\n") + "\nHope this helps.\nBye.\n",
        T[:3],
        id="number-alone-bold",
    ),
    pytest.param(_lines("### {n}.\n**{t}**\nText.", T[:3], "\n\n"), T[:3], id="number-alone-heading"),
    pytest.param(_lines("{n}.\n   {t}", T[:3]), T[:3], id="number-alone-indented-title"),
    # numbered 1.1 1.2 from the start (and the look-alikes that stay prose or sub-items)
    pytest.param(_lines("1.{n} {t}", T[:3]), T[:3], id="dotted"),
    pytest.param(_lines("**1.{n} {t}**\nText.", T[:3]), T[:3], id="dotted-bold"),
    pytest.param(_lines("### 1.{n}. {t}\nText.", T[:3], "\n\n"), T[:3], id="dotted-heading"),
    pytest.param(
        "1.1 Keep a regular schedule\n1.2 Make your room dark\n2.1 Avoid late caffeine\n2.2 Exercise during the day\n"
        "\nThat is all.\nThanks.\n",
        T,
        id="dotted-two-levels",
    ),
    pytest.param(
        "1. Sleep\n1.1 Keep a regular schedule\n1.2 Make it dark\n2. Diet\n", ["Sleep", "Diet"], id="dotted-sub"
    ),
    pytest.param(
        "2.5 million people sleep badly.\n\n1. Keep a regular schedule\n2. Make your room dark\n",
        T[:2],
        id="decimal-prose",
    ),
    # a table of points split by a blank line
    pytest.param(
        "| # | Tip | Why |\n|---|---|---|\n| 1 | Keep a regular schedule | rhythm |\n\n"
        "| 2 | Make your room dark | melatonin |\n| 3 | Avoid late caffeine | alert |\n\nHope this helps!\nBye.\n",
        T[:3],
        id="table-split",
    ),
    pytest.param(
        "| Tip | Why |\n|---|---|\n| Keep a regular schedule | rhythm |\n\n| Make your room dark | melatonin |\n",
        T[:2],
        id="table-split-no-numbers",
    ),
    # Chinese numbering
    pytest.param("一、保持规律作息\n二、保持房间黑暗\n三、避免咖啡因\n", ZH, id="zh-numerals"),
    pytest.param("（一）保持规律作息\n（二）保持房间黑暗\n（三）避免咖啡因\n", ZH, id="zh-paren-numerals"),
    pytest.param("第一，保持规律作息。\n第二，保持房间黑暗。\n第三，避免咖啡因。\n", ZH, id="zh-ordinals"),
    pytest.param("第1步：保持规律作息\n第2步：保持房间黑暗\n步骤3：避免咖啡因\n", ZH, id="zh-steps"),
    pytest.param("（1）早寝早起\n（2）部屋を暗くする\n", ["早寝早起", "部屋を暗くする"], id="ja-fullwidth-paren"),
    pytest.param("①早寝早起\n②部屋を暗くする\n", ["早寝早起", "部屋を暗くする"], id="ja-circled-no-space"),
    pytest.param(
        "以下是一些建议：\n\n一、保持规律作息\n每天同一时间睡觉。\n\n二、保持房间黑暗\n使用遮光窗帘。\n\n三、避免咖啡因\n下午不喝。\n\n希望对你有帮助！\n",
        ZH,
        id="zh-sections",
    ),
    # keyword labels beyond Step/Tip, letters and ranges, other languages
    pytest.param(_lines("Example {n}: {t}", T[:3]), T[:3], id="kw-example"),
    pytest.param(_lines("**Mistake {n}: {t}**\nText.", T[:3], "\n\n"), T[:3], id="kw-mistake-bold"),
    pytest.param("Option A: Keep a regular schedule\nOption B: Make your room dark\n", T[:2], id="kw-letter"),
    pytest.param(
        "**Weeks 1-2: Basics**\n- syntax\n\n**Weeks 3–4: Data structures**\n- lists\n\n**Week 5: Projects**\n- build\n",
        ["Basics", "Data structures", "Projects"],
        id="kw-range",
    ),
    pytest.param(
        "Paso 1: Reúne todo\nPaso 2: Mezcla\nPaso 3: Hornea\n", ["Reúne todo", "Mezcla", "Hornea"], id="kw-es"
    ),
    pytest.param("Schritt 1: Vorbereiten\nSchritt 2: Kneten\n", ["Vorbereiten", "Kneten"], id="kw-de"),
    pytest.param("Étape 1 : Préparer\nÉtape 2 : Mélanger\n", ["Préparer", "Mélanger"], id="kw-fr"),
    # numbered lines of the other family under an item ("1." under "Step 1:", "Example 1:" under "1.") are its
    # sub-items; one that goes on with the numbering after a blank line is an item ("Step 3:" after "2.")
    pytest.param(
        "Step 1: Gather the flour\n1. sift it\n2. weigh it\nStep 2: Mix the batter\n1. whisk\nStep 3: Bake\n",
        ["Gather the flour", "Mix the batter", "Bake"],
        id="family-digits-under-steps",
    ),
    pytest.param(
        "### Day 1: Rome\n1. Colosseum\n2. Forum\n\n### Day 2: Florence\n1. Uffizi\n",
        ["Rome", "Florence"],
        id="family-digits-under-days",
    ),
    pytest.param(
        "1. Use loops\nExample 1: a for loop\n2. Write functions\nOption 1: a def\nOption 2: a lambda\n3. Test\n",
        ["Use loops", "Write functions", "Test"],
        id="family-keywords-under-digits",
    ),
    pytest.param("1. Plan\n2. Focus\n\nStep 3: Rest\n", ["Plan", "Focus", "Rest"], id="family-goes-on"),
    pytest.param(
        "一、饮食\n1. 多吃蔬菜\n2. 少吃糖\n二、运动\n（1）每天散步\n三、睡眠\n",
        ["饮食", "运动", "睡眠"],
        id="family-zh-outline",
    ),
    pytest.param("（一）饮食\n1. 多吃蔬菜\n（二）运动\n", ["饮食", "运动"], id="family-zh-paren-outline"),
    pytest.param("1. Diet\n(1) greens\n(2) water\n2. Sleep\n", ["Diet", "Sleep"], id="family-paren-under-digits"),
    # short plain labels heading groups of bullets are the points, as bold labels are (one label alone, or a lead-in,
    # leaves the bullets the points)
    pytest.param(
        "Pros:\n- cheap\n- fast\n\nCons:\n- loud\n\nOverall, it depends.\nThanks.\n",
        ["Pros", "Cons"],
        id="plain-labels",
    ),
    pytest.param("Ingredients:\n- flour\n- eggs\n", ["flour", "eggs"], id="plain-label-alone"),
    pytest.param(
        "Here are some tips:\n- Plan\n- Focus\n\nMore tips:\n- Rest\n", ["Plan", "Focus", "Rest"], id="lead-ins"
    ),
    # an emoji before the number
    pytest.param(_lines("\U0001f539 {n}. {t}", T[:3]), T[:3], id="emoji-before-number"),
    pytest.param(_lines("### \u2705 {n}. **{t}**\nText.", T[:3], "\n\n"), T[:3], id="emoji-before-number-heading"),
    pytest.param(_lines("- {n}. {t}", T[:3]), T[:3], id="bullet-before-number"),
    pytest.param(
        "1. Plan\n- 1. a sub-step\n- 2. another\n2. Focus\n", ["Plan", "Focus"], id="bullet-number-under-number"
    ),
    pytest.param(_lines("###{n}. {t}\nText.", T[:3]), T[:3], id="heading-without-space"),
    # an unspaced em dash ends a title (an en dash in a range does not)
    pytest.param(_lines("{n}. {t}\u2014more about it.", T[:3]), T[:3], id="em-dash-unspaced"),
    pytest.param(_lines("{n}. **{t}**\u2014more about it.", T[:3]), T[:3], id="em-dash-unspaced-bold"),
    pytest.param(
        "1. Sleep 7–9 hours\n2. Nap 10–20 minutes\n", ["Sleep 7–9 hours", "Nap 10–20 minutes"], id="en-dash-range"
    ),
    # an emphasised label is the title whole, a colon inside it included
    pytest.param(
        "1. **Python 3.11: Faster CPython** - big speedups\n2. **Typing: the Self type** - nicer hints\n",
        ["Python 3.11: Faster CPython", "Typing: the Self type"],
        id="bold-label-with-colon",
    ),
    # invisible characters and other line ends
    pytest.param("\ufeff" + _lines("{n}. {t}\u200b", T[:3]), T[:3], id="bom-zero-width"),
    pytest.param(_lines("{n}. {t}", T[:3]).replace("\n", "\r"), T[:3], id="cr-line-ends"),
    pytest.param(_lines("{n}. {t}", T[:3]).replace("\n", "\u2028"), T[:3], id="unicode-line-separator"),
]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "titles"), ANSWERS)
def test_list_style_classes_are_read_whole_and_streamed(text: str, titles: list[str], crlf: bool) -> None:
    check_read_whole_and_streamed(text, titles, crlf=crlf)


def test_auto_numbering_goes_on_after_a_closing_but_a_restart_still_ends_the_list() -> None:
    """A list numbered "1." "1." "1." goes on after a sentence; a list numbered "1." "2." that starts again
    after one is the whole answer (the early stop, no point)."""
    parser = SkeletonParser()
    parser.feed("1. Plan\n1. Focus\n\nI hope this helps!\n\n")
    parser.feed("1. Rest\n")
    assert not parser.list_ended and parser.points == ["Plan", "Focus", "Rest"]
    parser = SkeletonParser()
    parser.feed("1. Plan\n2. Focus\n\nI hope this helps!\n\n1. Rest\n")
    assert parser.list_ended and parser.finish() == ["Plan", "Focus"]


def test_a_number_alone_waits_for_its_title_and_a_point_comes_with_it() -> None:
    parser = SkeletonParser()
    assert parser.feed("1.\n") == []
    assert parser.feed("\n**Keep a regular schedule**\n") == ["Keep a regular schedule"]
    assert parser.feed("2.\n- a sub-item, not a title\n") == []  # a number followed by an item is no point
    assert parser.finish() == ["Keep a regular schedule"]


def test_a_dotted_list_gives_its_first_point_when_the_second_line_follows() -> None:
    parser = SkeletonParser()
    assert parser.feed("1.1 Keep a regular schedule\n") == []  # "1.5 hours is enough." reads the same way
    assert parser.feed("1.2 Make your room dark\n") == ["Keep a regular schedule", "Make your room dark"]
    assert parser.feed("1.2.1 a sub-item\n2.1 Avoid late caffeine\n") == ["Avoid late caffeine"]
    assert parse_skeleton("1.5 hours is enough.\nSleep more.\n") == []


def test_line_forms_of_the_new_classes() -> None:
    cases = {
        "一、保持规律作息": "保持规律作息",
        "（二）保持房间黑暗": "保持房间黑暗",
        "第三，避免咖啡因。": "避免咖啡因",
        "第4步：烘烤": "烘烤",
        "Suggestion 2: Read more": "Read more",
        "Days 3–4: Florence": "Florence",
        "**Part B: Build the frame**": "Build the frame",
        "\U0001f539 2. Focus": "Focus",
        "1. Rome\u2014the eternal city": "Rome",
        "* 3) Rest": "Rest",
        "##2. Focus": "Focus",
        "1. **Pros: the short list**": "Pros: the short list",
    }
    for line, title in cases.items():
        assert parse_line(line) == ("num", title), line
    for line in ("第一次去北京", "一个好习惯", "Python 3 is great.", "Option A is better.", "Sign up today."):
        assert parse_line(line) is None, line
    assert parse_line("\U0001f51f Ten") == ("num", "Ten")  # an emoji that is the number itself
    assert parse_line("#1 Move more") == ("num", "Move more")  # a hash number, not a heading
    assert parse_line("- 1/2 cup flour") == ("bullet", "1/2 cup flour")


def test_plain_labels_are_short_capitalised_words_not_lead_ins_or_code() -> None:
    assert parse_heading("Pros:") == (8, "Pros")
    assert parse_heading("Morning routine:") == (8, "Morning routine")
    for line in ("else:", "def f(x):", "Dividing both sides by 7:", "Here are some tips:", "Key points:"):
        assert parse_heading(line) is None, line
    assert parse_heading("Benefits of regular exercise for you:") is None  # a sentence, not a label
