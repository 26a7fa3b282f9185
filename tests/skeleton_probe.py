"""A probe of the skeleton reader on list styles real chat models write (issue 22, fifth and sixth rounds).

Each case is a skeleton or an answer as a model writes one (Llama, Mistral, Qwen, Gemma, Phi, DeepSeek, GPT,
Claude styles) and the titles a reader should keep; prose cases keep none. Every case is read whole and fed in 5
chunkings (1 to 64 characters), LF and CRLF: 12 readings. A reading is misread when its titles differ, or when
the early stop comes before the last item's line is complete. Run from the checkout's root:

    python -m tests.skeleton_probe            # the counts, and each misread case
    python -m tests.skeleton_probe --quiet    # the counts only

It is a measuring script, not a test: the classes it found are tests in ``tests/test_skeleton_classes5.py``
and ``tests/test_reader6_*.py``.
"""

from __future__ import annotations

import argparse
import json

from sotrag.app.skeleton import parse_skeleton
from tests.skeleton_stream import stream_skeleton

T = ["Keep a consistent schedule", "Limit screens before bed", "Avoid caffeine after noon"]
D = ["Go to bed at the same time.", "Blue light delays sleep.", "It stays in the body for hours."]
P = ["Define your goals", "Break tasks into steps", "Review progress weekly", "Reward small wins"]
C = ["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"]
U = ["Set `timeout: 30` in the config", "Run `make -- all` first", "Use `a - b` carefully"]
TEN = [*T, *P, "Drink water early", "Walk every day", "Stretch at night"]


def _n(fmt: str, titles: list[str] = T, sep: str = "\n", details: list[str] = D) -> str:
    """``titles`` one ``fmt`` line each: ``{n}`` the number from 1, ``{t}`` the title, ``{d}`` its detail."""
    ds = [*details, *(["More on it."] * len(titles))]
    return sep.join(fmt.format(n=i, t=t, d=d) for i, (t, d) in enumerate(zip(titles, ds, strict=False), 1)) + "\n"


CASES: list[tuple[str, str, list[str]]] = [
    # --- styles earlier rounds read (a check that they still are) ---
    ("llama3-bold", "Here is a skeleton answer:\n\n" + _n("{n}. **{t}**"), T),
    ("llama3-bold-closing", "Sure! Here's a skeleton:\n\n" + _n("{n}. **{t}**: {d}") + "\nLet me know!\n", T),
    ("mistral-colon", _n("{n}. {t}: {d}"), T),
    ("qwen-fullwidth-colon", _n("{n}. **{t}**：{d}"), T),
    ("gemma-bold-inside", "## Skeleton\n\n" + _n("**{n}. {t}:** {d}", sep="\n\n"), T),
    ("gpt4o-headings", _n("### {n}. **{t}**\n   - {d}", sep="\n\n"), T),
    ("claude-plain", "Here's a skeleton outline:\n\n" + _n("{n}. {t}") + "\nEach point can be expanded.\n", T),
    ("table", "| # | Point | Why |\n|---|---|---|\n" + _n("| {n} | {t} | {d} |"), T),
    ("table-no-number", "| Point | Why |\n|:--|:--|\n" + _n("| **{t}** | {d} |"), T),
    ("sub-numbered", _n("{n}. {t}\n   {n}.1 Detail one\n   {n}.2 Detail two"), T),
    ("dotted-top", _n("1.{n} {t}"), T),
    ("keycap", _n("{n}\ufe0f\u20e3 **{t}**"), T),
    ("circled", "".join(f"{c} {t}\n" for c, t in zip("①②③", T, strict=True)), T),
    ("paren", _n("({n}) {t}"), T),
    ("paren-close", _n("{n}) {t}"), T),
    ("letters", "".join(f"{c}) {t}\n" for c, t in zip("abc", T, strict=True)), T),
    ("roman-lower", "".join(f"{c}. {t}\n" for c, t in zip(["i", "ii", "iii"], T, strict=True)), T),
    ("step-emdash", _n("Step {n} \u2014 {t}"), T),
    ("q-numbers", _n("Q{n}: {t}"), T),
    (
        "chinese",
        "".join(
            f"{c}、{t}\n" for c, t in zip("一二三", ["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"], strict=True)
        ),
        ["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"],
    ),
    (
        "fullwidth-digits",
        "".join(f"{c}．{t}\n" for c, t in zip("１２３", ["早く寝る", "画面を見ない", "運動する"], strict=True)),
        ["早く寝る", "画面を見ない", "運動する"],
    ),
    ("no-final-newline", _n("{n}. {t}").rstrip("\n"), T),
    ("bullets", "Key points:\n" + _n("- {t}"), T),
    ("star-bullets-bold", _n("* **{t}:** {d}"), T),
    ("think-block", "<think>\nThe user wants 3 points.\n1. maybe this\n</think>\n\n" + _n("{n}. {t}"), T),
    ("html-list", "<ol>\n" + _n("  <li>{t}</li>") + "</ol>\n", T),
    ("json-array", json.dumps(T, indent=2) + "\n", T),
    (
        "ordinals",
        _n("{t}.", sep="\n\n")
        .replace(T[0], "First, keep a consistent schedule", 1)
        .replace(T[1], "Second, limit screens before bed", 1)
        .replace(T[2], "Third, avoid caffeine after noon", 1),
        T,
    ),
    ("tab-after-number", _n("{n}.\t{t}"), T),
    ("bold-number-colon", _n("**{n}:** {t}"), T),
    ("hash-number", _n("#{n} {t}"), T),
    ("dingbat-circled", "".join(f"{c} {t}\n" for c, t in zip("\u2776\u2777\u2778", T, strict=True)), T),
    ("tip-hash-dash", _n("Tip #{n} - {t}"), T),
    ("point-word-number", "".join(f"Point {w}: {t}\n" for w, t in zip(["One", "Two", "Three"], T, strict=True)), T),
    ("markdown-checklist", _n("- [ ] {t}"), T),
    ("latex", "\\begin{itemize}\n" + _n("  \\item {t}") + "\\end{itemize}\n", T),
    ("crlf-blank-lines", _n("{n}. **{t}**\n\n   {d}", sep="\n\n").replace("\n", "\r\n"), T),
    (
        "restart-after-heading",
        "## Morning\n" + _n("{n}. {t}", T[:2]) + "\n## Evening\n" + _n("{n}. {t}", P[:2]),
        [*T[:2], *P[:2]],
    ),
    # --- the known limits of round 4 ---
    ("no-dot-number", _n("No. {n} {t}"), T),
    ("arrow-number", _n("{n} -> {t}"), T),
    ("fat-arrow-number", _n("{n} => {t}"), T),
    ("unicode-arrow-number", _n("{n} \u2192 {t}"), T),
    ("rst-auto", "Skeleton\n========\n\n" + _n("#. {t}"), T),
    ("rst-auto-plain", _n("#. {t}"), T),
    ("definition-list", _n("{t}\n: {d}", sep="\n\n"), T),
    ("definition-list-tight", _n("{t}\n:   {d}"), T),
    ("definition-list-loose", _n("{t}\n\n: {d}", sep="\n\n"), T),
    ("yaml-maps", _n("- title: {t}\n  detail: {d}"), T),
    ("yaml-maps-fenced", "```yaml\npoints:\n" + _n("  - title: {t}\n    description: {d}") + "```\n", T),
    ("yaml-maps-id-first", _n("- id: {n}\n  title: {t}\n  detail: {d}"), T),
    ("yaml-maps-quoted", _n('- title: "{t}"\n  summary: "{d}"'), T),
    ("yaml-plain", "points:\n" + _n("  - {t}"), T),
    ("yaml-plain-fenced", "```yaml\nskeleton:\n" + _n('  - "{t}"') + "```\n", T),
    ("yaml-plain-dash-flush", "skeleton:\n" + _n("- {t}"), T),
    ("jsonl", "".join(json.dumps({"point": i, "title": t}) + "\n" for i, t in enumerate(T, 1)), T),
    ("jsonl-fenced", "```jsonl\n" + "".join(json.dumps({"title": t}) + "\n" for t in T) + "```\n", T),
    ("jsonl-strings", "".join(json.dumps(t) + "\n" for t in T), T),
    ("json-line-comments", "[\n" + "".join(f'  "{t}", // point {i}\n' for i, t in enumerate(T, 1)) + "]\n", T),
    ("json-comment-lines", "[\n  // the first point\n" + ",\n  // next\n".join(f'  "{t}"' for t in T) + "\n]\n", T),
    ("json-block-comment", '/* skeleton */\n[\n  /* 1 */ "' + '",\n  /* n */ "'.join(T) + '"\n]\n', T),
    ("python-comments", "[\n" + "".join(f"    '{t}',  # point {i}\n" for i, t in enumerate(T, 1)) + "]\n", T),
    (
        "ordinals-finally-hope",
        "First, keep a consistent schedule.\n\nSecond, limit screens before bed.\n\n"
        "Third, avoid caffeine after noon.\n\nFinally, I hope this helps you sleep better.\n",
        T,
    ),
    (
        "ordinals-finally-item",
        "First, keep a consistent schedule.\nSecond, limit screens before bed.\n"
        "Third, avoid caffeine after noon.\nFinally, exercise early in the day.\n",
        [*T, "Exercise early in the day"],
    ),
    (
        "first-step-sentences",
        "The first step is to define your goals. Write them down.\n\n"
        "The second step is to break tasks into steps.\n\nThe third step is to review progress weekly.\n\n"
        "The final step is to reward small wins.\n",
        P,
    ),
    (
        "first-thing-sentences",
        "The first thing you should do is define your goals.\n"
        "The second thing is to break tasks into steps.\nThe third thing is to review progress weekly.\n",
        P[:3],
    ),
    # --- more numbering forms ---
    ("nr-german", _n("Nr. {n}: {t}"), T),
    ("numero-sign", _n("\u2116{n}. {t}"), T),
    ("ordinal-indicator", _n("{n}\u00ba {t}"), T),
    ("double-paren-bold", _n("**({n})** {t}"), T),
    ("bracket-then-bold", _n("[{n}] **{t}**"), T),
    ("angle-number", _n("<{n}> {t}"), T),
    ("number-pipe", _n("{n} | {t}"), T),
    ("section-sign", _n("\u00a7{n} {t}"), T),
    ("point-of", _n("Point {n} of 3: {t}"), T),
    ("html-h3", _n("<h3>{n}. {t}</h3>\n<p>{d}</p>"), T),
    ("html-p-numbers", _n("<p>{n}. {t}</p>"), T),
    ("html-bold-numbers", _n("<b>{n}.</b> {t}<br>"), T),
    ("asciidoc-dots", "".join(f". {t}\n" for t in T), T),
    ("org-numbers", "* Skeleton\n" + _n("{n}. {t}"), T),
    ("dash-number-dash", _n("- {n} - {t}"), T),
    ("number-bracket-close", _n("{n}] {t}"), T),
    (
        "bold-title-only-numbers-in-heading",
        _n("#### Point {n}\n**{t}**", sep="\n\n"),
        ["Point 1", "Point 2", "Point 3"],
    ),
    ("emoji-number-words", _n("\U0001f539 **Step {n}:** {t}"), T),
    ("pipe-table-no-outer", "# | Point | Why\n--|--|--\n" + _n("{n} | {t} | {d}"), T),
    ("table-then-closing", "| Step | Action |\n|---|---|\n" + _n("| {n} | {t} |") + "\nHope this helps!\nEnjoy.\n", T),
    ("numbered-heading-setext", _n("{n}. {t}\n------", sep="\n\n"), T),
    ("md-escaped-dot", _n("{n}\\. {t}"), T),
    ("number-colon-bold", _n("{n}: **{t}**"), T),
    ("spaced-paren", _n("( {n} ) {t}"), T),
    ("fullwidth-paren", _n("（{n}）{t}"), T),
    ("superscript-like", _n("{n}\u20e3 {t}"), T),
    (
        "roman-upper-headings",
        "".join(f"## {r}. {t}\n\n{d}\n\n" for r, t, d in zip(["I", "II", "III"], T, D, strict=True)),
        T,
    ),
    ("step-word-bold-heading", _n("## Step {n}: {t}\n{d}", sep="\n\n"), T),
    ("vietnamese-buoc", _n("Bước {n}: {t}"), T),
    ("indonesian-langkah", _n("Langkah {n}: {t}"), T),
    ("japanese-step", _n("ステップ{n}：{t}"), T),
    ("arabic-digits", "".join(f"{d}. {t}\n" for d, t in zip("١٢٣", T, strict=True)), T),
    # --- whole answers with structure around the list ---
    (
        "gpt-answer-sections",
        "Great question! Sleep matters.\n\n"
        + _n("{n}. **{t}**\n   - {d}\n   - Keep at it.", sep="\n\n")
        + "\n### Summary\nFollow these and you will sleep better.\n",
        T,
    ),
    (
        "claude-answer-closing",
        "Here are three ideas:\n\n" + _n("{n}. {t} - {d}") + "\nThese small changes add up. "
        "Would you like more detail on any of them?\n",
        T,
    ),
    (
        "llama-answer-closing-two",
        _n("{n}. **{t}**: {d}", sep="\n\n") + "\nBy following these tips, you can sleep "
        "better.\n\nI hope this helps!\n",
        T,
    ),
    (
        "qwen-cn-answer",
        "以下是提纲：\n\n"
        + "".join(
            f"{i}. **{t}**：说明。\n" for i, t in enumerate(["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"], 1)
        )
        + "\n希望对你有帮助！\n",
        ["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"],
    ),
    (
        "deepseek-think-then-table",
        "<think>\nLet me plan.\n</think>\n\n| No. | Point |\n|----|----|\n" + _n("| {n} | {t} |"),
        T,
    ),
    ("phi-end-token", _n("{n}. {t}") + "<|end|>\nIgnored text\n", T),
    (
        "list-then-second-list-after-lead-in",
        _n("{n}. {t}", T[:2]) + "\nAlso consider:\n" + _n("{n}. {t}", P[:2]),
        [*T[:2], *P[:2]],
    ),
    (
        "table-1-col-number-title",
        "| Step | Title | Details |\n| --- | --- | --- |\n" + _n("| Step {n} | {t} | {d} |"),
        T,
    ),
    ("bold-lines-only", _n("**{t}**\n{d}", sep="\n\n"), T),
    ("headings-only", _n("## {t}\n{d}", sep="\n\n"), T),
    ("sub-bullets-plus", _n("{n}. {t}\n   + {d}"), T),
    ("numbers-with-time", _n("{n}. {t} (5 minutes)"), [t + " (5 minutes)" for t in T]),
    ("nested-quote-list", "> Here is the plan:\n>\n" + _n("> {n}. {t}"), T),
    # --- a second batch of styles ---
    ("bold-keycap", _n("**{n}\ufe0f\u20e3 {t}**"), T),
    ("zero-padded", _n("0{n}. {t}"), T),
    ("no-space-after-dot", _n("{n}.{t}"), T),
    ("two-spaces", _n("{n}.  {t}"), T),
    ("empty-think", "<think>\n\n</think>\n\n" + _n("{n}. **{t}**"), T),
    ("table-keycap-col", "| | Point |\n|---|---|\n" + _n("| {n}\ufe0f\u20e3 | {t} |"), T),
    ("table-bold-cells", "| No. | Point |\n|:-:|:--|\n" + _n("| **{n}** | **{t}** |"), T),
    ("step-keycap", _n("Step {n}\ufe0f\u20e3: {t}"), T),
    ("outline-indented", "I. {}\n   A. a hook\n   B. a thesis\nII. {}\n   A. a point\nIII. {}\n".format(*T), T),
    ("bold-paren-both", _n("**({n}) {t}**"), T),
    ("fullwidth-comma-han", "".join(f"{c}、{t}\n" for c, t in zip("１２３", T, strict=True)), T),
    ("korean-stage", _n("{n}\ub2e8\uacc4: {t}"), T),
    ("part-roman-emdash", "".join(f"Part {r} \u2014 {t}\n" for r, t in zip(["I", "II", "III"], T, strict=True)), T),
    ("unicode-roman", "".join(f"{r}. {t}\n" for r, t in zip("\u2160\u2161\u2162", T, strict=True)), T),
    ("italic-titles", _n("{n}. *{t}* \u2013 {d}"), T),
    (
        "footnotes-after",
        _n("{n}. {t}[^{n}]") + "\n[^1]: Walker, 2017.\n[^2]: Chang, 2015.\n",
        [f"{t}[^{i}]" for i, t in enumerate(T, 1)],
    ),
    ("callout", "> [!TIP]\n> Three habits:\n>\n" + _n("> {n}. {t}"), T),
    ("note-after-rule", _n("{n}. {t}") + "\n---\n\n**Note:** consult a doctor if it persists.\n", T),
    ("emoji-after-number", _n("{n}. \u23f0 {t}"), T),
    ("heading-paren", _n("#### {n}) {t}\n{d}", sep="\n\n"), T),
    ("claude-en-dash", _n("{n}. **{t}** \u2013 {d}"), T),
    ("point-hash-dash", _n("Point #{n} - {t}"), T),
    (
        "json-fenced-objects-comments",
        "```jsonc\n[\n" + "\n".join(f'  {{"title": "{t}"}}, // {i}' for i, t in enumerate(T, 1)) + "\n]\n```\n",
        T,
    ),
    (
        "yaml-title-under-fence-label",
        "Here it is:\n\n```yaml\n- title: {}\n- title: {}\n- title: {}\n```\n".format(*T),
        T,
    ),
    (
        "ordinal-next-step",
        "The first step is to define your goals.\nThe next step is to break tasks into steps.\n"
        "The third step is to review progress weekly.\n",
        P[:3],
    ),
    ("gemma-bold-bullets-sub", _n("* **{t}:** {d}\n    * More detail."), T),
    ("mistral-dash-numbers", _n("{n} - {t}"), T),
    ("phi-numbers-colon", _n("{n}: {t}"), T),
    ("prose-step-is", "Step 1 is the hardest.\nAfter that it gets easier.\n", []),
    ("prose-years", "2023: a great year.\n2024: even better.\n", []),
    ("prose-inline-parens", "You need 1) a plan 2) time 3) rest.\nThat is it.\n", []),
    ("prose-definition-like", "The answer:\nIt depends on the case.\n", []),
    ("prose-jsonl-one", '{"title": "Sleep", "body": "Rest well."}\n\nThat is the answer.\n', []),
    # --- a third batch: whole answers in the styles of current chat models ---
    (
        "gpt4o-emoji-headings-answer",
        "Improving sleep comes down to a few habits. Here's what works:\n\n"
        "### 1. \U0001f6cf\ufe0f Keep a consistent schedule\nGo to bed at the same time, **even on weekends**.\n\n"
        "### 2. \U0001f4f5 Limit screens before bed\n- Blue light delays melatonin.\n- Try reading instead.\n\n"
        "### 3. \u2615 Avoid caffeine after noon\nIts half-life is 5\u20136 hours.\n\n---\n\n"
        "**Bottom line:** small changes add up. Want a printable checklist?\n",
        T,
    ),
    (
        "claude-bold-sentences",
        "Here are some evidence-based strategies:\n\n"
        + _n("**{t}.** {d} This matters more than most people think.", sep="\n\n")
        + "\nIf problems persist, consider talking to a doctor.\n",
        T,
    ),
    ("llama31-tip-hash-bold", _n("**Tip #{n}: {t}**\n{d}", sep="\n\n") + "\nSweet dreams!\n", T),
    (
        "gemini-bullets-summary",
        "## How to sleep better\n\nHere's a breakdown:\n\n"
        + _n("* **{t}:** {d}\n    * A detail.")
        + "\n**In summary**, consistency is key.\n",
        T,
    ),
    ("lettered-subitems", _n("{n}. {t}\n   a. a detail\n   b. another detail"), T),
    ("phi3-steps-closing", _n("Step {n}: {t}") + "\nBy following these steps, you will sleep better.\n", T),
    ("r1-answer-label", "<think>\nOk.\n</think>\n\n**Answer:**\n\n" + _n("{n}. {t}"), T),
    ("llama2-indented", _n("  {n}. {t}"), T),
    ("sub-numbered-headings", _n("### {n}. {t}\n#### {n}.1 Why\nText.\n#### {n}.2 How\nText.", sep="\n\n"), T),
    ("table-title-desc", "| Habit | Why |\n|---|---|\n" + _n("| {t} | {d} |"), T),
    (
        "list-note-sources",
        _n("{n}. {t}") + "\n**Note:** results vary.\n\nSources:\n1. Walker, 2017\n2. Chang, 2015\n",
        T,
    ),
    # (a decision: an item written as sentences is its title whole, up to 120 characters)
    (
        "bold-number-paragraphs",
        _n("**{n}.** {t}. {d}", sep="\n\n"),
        [f"{t}. {d[:-1]}" for t, d in zip(T, D, strict=True)],
    ),
    (
        "intro-body-conclusion",
        "## Introduction\nText.\n\n## Main habits\nText.\n\n## Conclusion\nText.\n",
        ["Introduction", "Main habits", "Conclusion"],
    ),
    ("numbered-question-restate", "**Question:** How can I sleep better?\n\n**Skeleton:**\n" + _n("{n}. {t}"), T),
    ("bullets-then-numbered-sub", _n("- {t}\n  1. a step\n  2. another step"), T),
    ("emoji-numbers-no-space", _n("{n}\ufe0f\u20e3{t}"), T),
    ("numbered-with-trailing-colon", _n("{n}. {t}:\n   {d}"), T),
    # --- a fourth batch: rarer marks ---
    ("spanish-dot-dash", _n("{n}.- {t}"), T),
    ("bold-number-dash", _n("**{n}**- {t}"), T),
    ("circled-dot", "".join(f"{c}. {t}\n" for c, t in zip("①②③", T, strict=True)), T),
    ("degree-paren", _n("{n}\u00b0) {t}"), T),
    ("step-pipe", _n("Step {n} | {t}"), T),
    ("ordinal-number-noun", "".join(f"{o} Step: {t}\n" for o, t in zip(["1st", "2nd", "3rd"], T, strict=True)), T),
    ("bold-paren-letter", "".join(f"**({c})** {t}\n" for c, t in zip("abc", T, strict=True)), T),
    ("bullet-operator", _n("\u2219 {t}"), T),
    ("double-circled", "".join(f"{c} {t}\n" for c, t in zip("\u24f5\u24f6\u24f7", T, strict=True)), T),
    ("paren-ideograph", "".join(f"{c} {t}\n" for c, t in zip("\u3220\u3221\u3222", T, strict=True)), T),
    ("bracket-keyword", _n("[Step {n}] {t}"), T),
    ("superscript-numbers", "".join(f"{c} {t}\n" for c, t in zip("\u00b9\u00b2\u00b3", T, strict=True)), T),
    ("number-tab-bold", _n("{n}\t**{t}**"), T),
    ("prose-1-on-1", "1-on-1 meetings help.\n2-3 hours is enough.\n", []),
    ("prose-korean-exit", "1\ubc88 \ucd9c\uad6c\ub85c \ub098\uac00\uc138\uc694.\n", []),
    ("prose-degrees", "20\u00b0 outside today.\nStay warm.\n", []),
    ("prose-1st-place", "1st place: the red team.\nThey won easily.\n", []),
    ("xml-points", "<points>\n" + _n("  <point>{t}</point>") + "</points>\n", T),
    ("xml-steps", _n('<step n="{n}">{t}</step>'), T),
    ("claude-xml-wrapper", "<skeleton>\n" + _n("{n}. {t}") + "</skeleton>\n", T),
    ("prose-html-paragraphs", "<p>Sleep is vital.</p>\n<p>Rest well.</p>\n", []),
    # --- prose that must stay prose ---
    ("prose-plain", "Sleep is important. Go to bed at the same time every day.\n\nAvoid screens late.\n", []),
    (
        "prose-numbers",
        "In 2023 there were 3 studies.\n1 in 3 adults sleeps too little.\n2 hours of screen time delays sleep.\n",
        [],
    ),
    ("prose-first-second", "First, let me explain why. Sleep helps memory.\n\nSecondly, it helps mood. So rest.\n", []),
    ("prose-first-then-finally", "First, plan it.\nThen, do it.\nFinally, review it.\n", []),
    ("prose-math", "The answer is 42.\n1 + 1 = 2\n2 + 2 = 4\n3 + 3 = 6\n", []),
    ("prose-times", "We meet at 10:30.\n11:45 is lunch.\n", []),
    ("prose-code", "```python\nfor i in range(3):\n    print(i)\n```\nThat prints 0 to 2.\n", []),
    ("prose-json-in-sentence", 'Use `{"a": 1}` for that.\nIt is JSON.\n', []),
    ("prose-one-json-object", '{"answer": "Sleep more and avoid screens."}\n', []),
    ("prose-recipe", "You need:\n1/2 cup sugar\n2/3 cup milk\n3/4 cup flour\n", []),
    ("prose-the-first-time", "The first time I tried it, it failed.\nThe second time it worked.\n", []),
    ("prose-arrow", "1 -> 2 is a transition.\nIt is common.\n", []),
    ("prose-colon-line", "Note: this is important.\nIt matters.\n", []),
    ("prose-definition-colon", "Sleep is vital\n\nIt has many roles: memory, mood.\n", []),
    ("prose-yaml-config", "Set this:\n\n```yaml\nserver:\n  port: 8080\n  host: localhost\n```\n", []),
    ("prose-no-1", "He was the No. 1 fan of the team.\nEveryone knew it.\n", []),
    ("prose-hashtag", "#1 priority is rest.\nThat is all.\n", []),
    ("prose-finally", "Sleep matters. Finally, I hope this helps.\n", []),
    # --- a sixth batch (issue 22, sixth round): markdown habits, odd spaces and characters, entities, titles ---
    ("bold-italic-number", _n("***{n}. {t}***"), T),
    ("bold-italic-title", _n("{n}. ***{t}***: {d}"), T),
    ("heading-bold-number-title", _n("### **{n}. {t}**\n{d}", sep="\n\n"), T),
    ("heading-number-bold-paren", _n("## {n}) **{t}**\n{d}", sep="\n\n"), T),
    ("heading-keycap", _n("## {n}\ufe0f\u20e3 {t}\n{d}", sep="\n\n"), T),
    ("heading-keycap-bold", _n("#### {n}\ufe0f\u20e3 **{t}**"), T),
    ("quote-bold-numbers", _n("> **{n}. {t}**"), T),
    ("quote-nested", _n(">> {n}. {t}"), T),
    ("quote-with-empty-quote-lines", _n("> {n}. {t}\n>"), T),
    ("quote-list-crlf-closing", _n("> {n}. {t}") + "\nHope this helps.\n", T),
    ("fence-numbered", "```\n" + _n("{n}. {t}") + "```\n", T),
    ("fence-text-bullets", "```text\n" + _n("- {t}") + "```\n", T),
    ("preamble-colon-tight", "To sleep better, try these steps:\n" + _n("{n}. {t}"), T),
    ("preamble-colon-closing-tight", "Try these steps:\n" + _n("{n}. {t}") + "These help most people.\n", T),
    ("cjk-ideographic-comma", "".join(f"{i}、{t}\n" for i, t in enumerate(C, 1)), C),
    ("cjk-fullwidth-paren-number", "".join(f"（{i}）{t}\n" for i, t in enumerate(C, 1)), C),
    ("cjk-bold-fullwidth-colon", "".join(f"{i}. **{t}**：说明。\n" for i, t in enumerate(C, 1)), C),
    ("cjk-lenticular-title", "".join(f"{i}. 【{t}】说明。\n" for i, t in enumerate(C, 1)), C),
    ("cjk-lenticular-title-colon", "".join(f"{i}. 【{t}】：说明。\n" for i, t in enumerate(C, 1)), C),
    ("cjk-circled-no-space", "".join(f"{c}{t}\n" for c, t in zip("①②③", C, strict=True)), C),
    ("cjk-fullwidth-digit-paren", "".join(f"{c}）{t}\n" for c, t in zip("１２３", C, strict=True)), C),
    ("cjk-article", "".join(f"第{c}条：{t}\n" for c, t in zip("一二三", C, strict=True)), C),
    ("cjk-heading-colon", "".join(f"### {i}. {t}：说明\n\n" for i, t in enumerate(C, 1)), C),
    ("mixed-lf-crlf", "1. {}\r\n2. {}\n3. {}\r\n".format(*T), T),
    ("double-cr", _n("{n}. {t}").replace("\n", "\r\r\n"), T),
    ("trailing-spaces", _n("{n}. {t}   "), T),
    ("trailing-hard-break", _n("{n}. **{t}**  \n{d}"), T),
    ("trailing-tab", _n("{n}. {t}\t"), T),
    ("tab-indent", _n("\t{n}. {t}"), T),
    ("tab-indented-sub", _n("{n}. {t}\n\t- {d}"), T),
    ("space-only-blank-lines", _n("{n}. **{t}**\n   \n   {d}\n \t"), T),
    ("nbsp-after-number", _n("{n}.\u00a0{t}"), T),
    ("nbsp-indent", _n("\u00a0\u00a0{n}. {t}"), T),
    ("narrow-nbsp", _n("{n}.\u202f{t}"), T),
    ("ideographic-space", _n("{n}.\u3000{t}"), T),
    ("zero-width-space-first", _n("\u200b{n}. {t}"), T),
    ("zero-width-joiner", _n("{n}.\u200d {t}"), T),
    ("zero-width-non-joiner", _n("\u200c{n}. {t}"), T),
    ("word-joiner", _n("\u2060{n}. {t}"), T),
    ("soft-hyphen", _n("{n}. {t}\u00ad"), T),
    ("bidi-marks", _n("\u202a{n}. {t}\u202c"), T),
    ("emoji-zwj-title", _n("{n}. {t} \U0001f468\u200d\U0001f4bb"), [t + " \U0001f468\u200d\U0001f4bb" for t in T]),
    ("entity-nbsp", _n("{n}.&nbsp;{t}"), T),
    ("entity-nbsp-bold", _n("**{n}.**&nbsp;{t}"), T),
    ("entity-numeric-nbsp", _n("{n}.&#160;{t}"), T),
    ("entity-amp-title", _n("{n}. {t} &amp; more"), [t + " & more" for t in T]),
    ("entity-mdash-description", _n("{n}. {t} &mdash; {d}"), T),
    ("entity-quotes", _n("{n}. &quot;{t}&quot;"), T),
    (
        "entity-apostrophe",
        "1. Don&#39;t skip breakfast\n2. It&rsquo;s okay to rest\n3. Keep it simple\n",
        ["Don't skip breakfast", "It\u2019s okay to rest", "Keep it simple"],
    ),
    ("title-bold-colon-whole", _n("{n}. **Step up: {t}**"), [f"Step up: {t}" for t in T]),
    (
        "title-leading-numbers",
        "1. 8 hours of sleep\n2. 10,000 steps a day\n3. 2 liters of water\n",
        ["8 hours of sleep", "10,000 steps a day", "2 liters of water"],
    ),
    (
        "title-decimal-start",
        "1. 3.5 hours of focus\n2. 1.5 liters water\n3. 0.5 km walk\n",
        ["3.5 hours of focus", "1.5 liters water", "0.5 km walk"],
    ),
    (
        "title-times",
        "1. Wake at 6:30 am\n2. Lunch at 12:00\n3. Sleep by 22:00\n",
        ["Wake at 6:30 am", "Lunch at 12:00", "Sleep by 22:00"],
    ),
    (
        "title-urls",
        "1. Read https://example.com/a\n2. Try https://example.org/b\n3. See http://x.io\n",
        ["Read https://example.com/a", "Try https://example.org/b", "See http://x.io"],
    ),
    ("title-links", _n("{n}. [{t}](https://example.com/{n})"), T),
    ("title-code-spans", _n("{n}. {t}", U), U),
    ("title-code-spans-bold", _n("{n}. **{t}**: {d}", U), U),
    (
        "title-code-span-description",
        _n("{n}. `{t}`: {d}", ["git status", "git add -p", "git commit"]),
        ["`git status`", "`git add -p`", "`git commit`"],
    ),
    ("title-curly-quotes", _n("{n}. \u201c{t}\u201d"), T),
    ("title-emoji-end", _n("{n}. {t} \u2705"), [t + " \u2705" for t in T]),
    ("title-emoji-before-bold", _n("{n}. \U0001f6cf\ufe0f **{t}**"), T),
    (
        "title-questions",
        "1. Why sleep matters?\n2. How much is enough?\n3. What blocks it?\n",
        ["Why sleep matters?", "How much is enough?", "What blocks it?"],
    ),
    (
        "title-ampersands",
        "1. R&D budget\n2. Q&A sessions\n3. P&L review\n",
        ["R&D budget", "Q&A sessions", "P&L review"],
    ),
    (
        "title-hashtags",
        "1. Use #hashtags\n2. Post at 9am\n3. Reply fast\n",
        ["Use #hashtags", "Post at 9am", "Reply fast"],
    ),
    ("emoji-before-number-heading", _n("### \u2705 {n}. {t}"), T),
    ("paren-number-bold-title", _n("({n}) **{t}**: {d}"), T),
    ("paren-number-heading", _n("### ({n}) {t}"), T),
    ("bold-bracket-number", _n("**[{n}]** {t}"), T),
    ("bold-keyword-no-separator", _n("**Step {n}** {t}"), T),
    ("bold-tip-no-separator", _n("**Tip {n}** \u2013 {t}"), T),
    ("right-aligned-numbers", "".join(f"{i:>2}. {t}\n" for i, t in enumerate(TEN, 1)), TEN),
    ("bullet-no-space", _n("\u2022{t}"), T),
    ("bullet-number-bold-colon", _n("- **{n}. {t}:** {d}"), T),
    ("table-emoji-first-column", "| | Tip |\n|---|---|\n" + _n("| \U0001f6cf\ufe0f | {t} |"), T),
    ("table-br-cells", "| # | Tip |\n|---|---|\n" + _n("| {n} | **{t}**<br>{d} |"), T),
    ("json-strings-with-commas", "".join(f'"{t}",\n' for t in T), T),
    (
        "html-li-strong-one-line",
        "<ol>" + "".join(f"<li><strong>{t}</strong>: {d}</li>" for t, d in zip(T, D, strict=True)) + "</ol>\n",
        T,
    ),
    ("superscripts-then-footnotes", _n("{n}. {t}") + "\n\u00b9 Walker, 2017.\n\u00b2 Chang, 2015.\n", T),
    ("bare-numbers-tab", _n("{n}\t{t}"), T),
    ("bare-numbers", _n("{n} {t}"), T),
    # (whole answers in the styles of current chat models, and headings numbered with no mark)
    (
        "llama3-full",
        "Improving sleep is important. Here are some tips:\n"
        "\n"
        "**1. Keep a consistent schedule**\n"
        "\n"
        "Go to bed at the same time every night, even on weekends. This helps regulate "
        "your body's internal clock.\n"
        "\n"
        "**2. Limit screens before bed**\n"
        "\n"
        "The blue light from phones can interfere with sleep. Try to avoid screens for "
        "an hour before bed.\n"
        "\n"
        "**3. Avoid caffeine after noon**\n"
        "\n"
        "Caffeine can stay in your system for hours.\n"
        "\n"
        "By following these tips, you can improve your sleep quality. Sweet dreams!\n",
        T,
    ),
    (
        "mistral-full",
        "Sure, here are three tips:\n"
        "\n"
        "1. Keep a consistent schedule: Go to bed at the same time.\n"
        "2. Limit screens before bed: Blue light delays sleep.\n"
        "3. Avoid caffeine after noon: It lingers.\n"
        "\n"
        "These tips should help you sleep better. If you continue to have trouble, consult a doctor.\n",
        T,
    ),
    (
        "qwen-full",
        "当然！以下是一些建议：\n"
        "\n"
        "### 1. 保持规律作息\n"
        "每天同一时间睡觉。\n"
        "\n"
        "### 2. 睡前少看屏幕\n"
        "蓝光会影响睡眠。\n"
        "\n"
        "### 3. 中午后不喝咖啡\n"
        "咖啡因会持续数小时。\n"
        "\n"
        "希望这些建议对你有帮助！\n",
        C,
    ),
    (
        "phi-full",
        "To improve sleep, consider the following steps:\n"
        "\n"
        "Step 1: Keep a consistent schedule\n"
        "Go to bed at the same time.\n"
        "\n"
        "Step 2: Limit screens before bed\n"
        "Blue light delays sleep.\n"
        "\n"
        "Step 3: Avoid caffeine after noon\n"
        "It lingers.\n"
        "\n"
        "By following these steps, you can sleep better.\n",
        T,
    ),
    (
        "deepseek-full",
        "<think>\n"
        "The user wants tips. I should list 3.\n"
        "1. schedule\n"
        "2. screens\n"
        "</think>\n"
        "\n"
        "Here are three tips:\n"
        "\n"
        "1. **Keep a consistent schedule** – Go to bed at the same time.\n"
        "2. **Limit screens before bed** – Blue light delays sleep.\n"
        "3. **Avoid caffeine after noon** – It lingers.\n"
        "\n"
        "Let me know if you'd like more details!\n",
        T,
    ),
    (
        "gpt4o-full",
        "Great question! Here are some tips:\n"
        "\n"
        "---\n"
        "\n"
        "### 1. **Keep a consistent schedule**\n"
        "- Go to bed at the same time.\n"
        "- Wake up at the same time.\n"
        "\n"
        "### 2. **Limit screens before bed**\n"
        "- Blue light delays sleep.\n"
        "\n"
        "### 3. **Avoid caffeine after noon**\n"
        "- It lingers for hours.\n"
        "\n"
        "---\n"
        "\n"
        "### Summary\n"
        "| Tip | Why |\n"
        "|---|---|\n"
        "| Schedule | Rhythm |\n"
        "\n"
        "Would you like a sleep plan?\n",
        T,
    ),
    (
        "claude-full",
        "Here are some evidence-based strategies:\n"
        "\n"
        "1. **Keep a consistent schedule.** Going to bed at the same time helps.\n"
        "\n"
        "2. **Limit screens before bed.** Blue light delays melatonin.\n"
        "\n"
        "3. **Avoid caffeine after noon.** Its half-life is long.\n"
        "\n"
        "The most important thing is consistency. Would you like me to go deeper on any of these?\n",
        T,
    ),
    (
        "llama2-full",
        "  Sure, I'd be happy to help! Here are some tips to improve your sleep:\n"
        "\n"
        "1. Keep a consistent schedule: Go to bed and wake up at the same time every day.\n"
        "2. Limit screens before bed: The blue light emitted by screens can suppress melatonin.\n"
        "3. Avoid caffeine after noon: Caffeine can stay in your system for up to 8 hours.\n"
        "\n"
        "I hope these tips help you improve your sleep! Let me know if you have any other questions.\n",
        T,
    ),
    (
        "yi-cn-bold-list",
        "以下是三个要点：\n"
        "1. **保持规律作息**：每天同一时间睡觉。\n"
        "2. **睡前少看屏幕**：蓝光影响睡眠。\n"
        "3. **中午后不喝咖啡**：咖啡因持续数小时。\n",
        C,
    ),
    (
        "numbered-then-explained-restart",
        "1. Keep a consistent schedule\n"
        "2. Limit screens before bed\n"
        "3. Avoid caffeine after noon\n"
        "\n"
        "Let me explain each point:\n"
        "\n"
        "1. Keep a consistent schedule: your body likes rhythm.\n"
        "2. Limit screens before bed: light.\n",
        T,
    ),
    (
        "items-with-nested-numbers-4sp",
        "1. Keep a consistent schedule\n"
        "    1. Bedtime\n"
        "    2. Wake time\n"
        "2. Limit screens before bed\n"
        "    1. Phones\n"
        "3. Avoid caffeine after noon\n",
        T,
    ),
    (
        "h2-numbered-no-dot",
        "## 1 Keep a consistent schedule\n\n## 2 Limit screens before bed\n\n## 3 Avoid caffeine after noon\n",
        T,
    ),
    (
        "h3-step-words",
        "### Step One: Keep a consistent schedule\n"
        "### Step Two: Limit screens before bed\n"
        "### Step Three: Avoid caffeine after noon\n",
        T,
    ),
    (
        "numbered-emoji-numbers-h3",
        "### 1️⃣ Keep a consistent schedule\n### 2️⃣ Limit screens before bed\n### 3️⃣ Avoid caffeine after noon\n",
        T,
    ),
    (
        "list-in-quote-with-closing-quote",
        "> 1. Keep a consistent schedule\n"
        "> 2. Limit screens before bed\n"
        "> 3. Avoid caffeine after noon\n"
        ">\n"
        "> Hope this helps.\n",
        T,
    ),
    (
        "prose-code-numbered-lines",
        "Here is the code:\n\n```python\n1. import os\n2. print(os.name)\n```\n\nIt prints the OS name.\n",
        [],
    ),
    # (streamed: text under an item after a blank line must not stop a list that goes on)
    ("quote-under-item", "1. {}\n2. {}\n\n> A quote about sleep.\n\nSo true.\n\n3. {}\n".format(*T), T),
    ("example-under-item", "1. {}\n2. {}\n\nFor example, stop at 9pm.\nThat works well.\n\n3. {}\n".format(*T), T),
    ("code-under-item", "1. {}\n2. {}\n\n```bash\nsleep 8h\n```\n\n3. {}\n".format(*T), T),
    ("table-under-item", "1. {}\n2. {}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n3. {}\n".format(*T), T),
    ("indented-paragraphs-under-item", "1. {}\n2. {}\n\n   Blue light.\n   It keeps you up.\n\n3. {}\n".format(*T), T),
    ("lazy-text-under-items", "1. {}\nText under.\n2. {}\nText.\n3. {}\nText.\n".format(*T), T),
    ("nested-numbers-then-top", "1. {}\n   1. a\n   2. b\n2. {}\n3. {}\n".format(*T), T),
    ("sections-thematic-breaks", "---\n" + _n("**{n}. {t}**\n{d}\n\n---", sep="\n\n"), T),
    (
        "whole-answer-after-skeleton",
        "1. {}\n2. {}\n3. {}\n\nNow the details.\n\n1. {}: long text.\n".format(*T, T[0]),
        T,
    ),
    ("prose-footnote", "Sleep matters.\u00b9\n\n\u00b9 Walker, 2017.\n", []),
    (
        "prose-bare-numbers",
        "1 in 3 adults sleep badly.\n2 hours of screens delay sleep.\n3 cups of coffee is a lot.\n",
        [],
    ),
    ("prose-ingredients", "1 cup flour\n2 eggs\n3 tbsp sugar\n", []),
    ("prose-quoted-line", '"To be or not to be."\nThat is the question.\n', []),
    ("prose-entities", "Use &lt;ol&gt; for ordered lists.\nIt is HTML.\n", []),
    ("prose-score-lines", "1-0 to the home team.\n2-1 in the end.\n", []),
    ("prose-ratios", "Ratio 1:2 works.\n3:4 is fine too.\n", []),
    ("prose-versions", "Python 3.11 is fast.\n3.12 is faster.\n", []),
]


def _last_line_end(text: str, title: str) -> int:
    """Where the line of the last point ends (case aside: a title may be capitalised from its line)."""
    start = text.lower().rfind(title.lower())
    if start < 0:
        start = text.lower().rfind(title.lower()[:12])
    ends = [i for i in (text.find(c, start) for c in "\n\r\u2028") if i >= 0]
    return min(ends, default=len(text))


def misreads(text: str, titles: list[str]) -> list[str]:
    """The readings of ``text`` that are wrong: whole, then 5 chunkings, LF and CRLF."""
    wrong: list[str] = []
    for eol in ("lf", "crlf"):
        t = text.replace("\r\n", "\n").replace("\n", "\r\n") if eol == "crlf" else text
        got = parse_skeleton(t, max_points=20)
        if got != titles:
            wrong.append(f"{eol} whole: {got}")
        end = _last_line_end(t, titles[-1]) if titles else -1
        for seed, chunk in enumerate((1, 3, 7, 16, 64)):
            points, ended = stream_skeleton(t, seed, max_points=20, max_chunk=chunk)
            if points != titles:
                wrong.append(f"{eol} chunks<={chunk}: {points}")
            elif titles and ended is not None and ended <= end:
                wrong.append(f"{eol} chunks<={chunk}: early stop at {ended}, before {end}")
    return wrong


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--quiet", action="store_true", help="print the counts only")
    quiet = args.parse_args().quiet
    bad_cases = bad_readings = 0
    for name, text, titles in CASES:
        wrong = misreads(text, titles)
        if wrong:
            bad_cases += 1
            bad_readings += len(wrong)
            if not quiet:
                print(f"{name}: {len(wrong)} of 12 wrong; expected {titles}\n    " + "\n    ".join(wrong[:3]))
    lists = sum(1 for _, _, titles in CASES if titles)
    print(
        f"{len(CASES)} cases ({lists} lists, {len(CASES) - lists} prose), {len(CASES) * 12} readings: "
        f"{bad_cases} cases misread, {bad_readings} readings"
    )


if __name__ == "__main__":
    main()
