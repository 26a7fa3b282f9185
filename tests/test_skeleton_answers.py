"""Whole answers in the list styles chat models write (synthetic, one per style), read whole and streamed.

Each answer is read whole and fed in random chunks (CR LF line ends too): the points are the listed titles, and
the early stop never comes before the line of the last point is complete. The look-alikes that must not add a
point sit among them: fractions ("1/2 cup"), references lists, table headers, lists under lists, code.
"""

from __future__ import annotations

import pytest

from tests.skeleton_stream import check_read_whole_and_streamed

ANSWERS = [
    pytest.param(
        "Ingredients:\n- 1/2 cup flour\n- 1/4 cup sugar\n- 2 eggs\n",
        ["1/2 cup flour", "1/4 cup sugar", "2 eggs"],
        id="cup-bullets",
    ),
    pytest.param(
        "1. Mix 1/2 cup flour\n2. Add 1/4 cup sugar\n3. Bake\n",
        ["Mix 1/2 cup flour", "Add 1/4 cup sugar", "Bake"],
        id="cup-numbered",
    ),
    pytest.param(
        "1. Mix\n1/2 cup flour is enough.\n2. Bake\n",
        ["Mix", "Bake"],
        id="cup-under",
    ),
    pytest.param(
        "1/2 cup of oats is a good start.\n\n1. Mix\n2. Bake\n",
        ["Mix", "Bake"],
        id="cup-first",
    ),
    pytest.param(
        "1. Keep a schedule\n"
        "2. Drink water\n"
        "3. Walk daily\n"
        "\n"
        "References:\n"
        "[1] https://example.org/a\n"
        "[2] Smith, J. Sleep. 2020.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="refs-heading",
    ),
    pytest.param(
        "1. Keep a schedule\n"
        "2. Drink water\n"
        "3. Walk daily\n"
        "\n"
        "[1] Smith, J. (2020). Sleep. Journal.\n"
        "[2] Doe, K. Diet habits. 2019.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="refs-noheading",
    ),
    pytest.param(
        "- Keep a schedule\n- Drink water\n- Walk daily\n\n[1] Smith, J. Sleep.\n[2] Doe, K. Diet.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="refs-after-bullets",
    ),
    pytest.param(
        "[1] Keep a schedule\n"
        "[2] Drink water\n"
        "[3] Walk daily\n"
        "\n"
        "**Sources:**\n"
        "[1] Smith, J. Sleep.\n"
        "[2] Doe, K. Diet.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="refs-after-brackets",
    ),
    pytest.param(
        "**1. Keep a schedule**\n"
        "\n"
        "Text.\n"
        "\n"
        "**2. Drink water**\n"
        "\n"
        "Text.\n"
        "\n"
        "**3. Walk daily**\n"
        "\n"
        "Text.\n"
        "\n"
        "## References\n"
        "1. Smith, J. Sleep.\n"
        "2. Doe.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="refs-after-bold",
    ),
    pytest.param(
        "[1] Keep a schedule\n[2] Drink water\n[3] Walk daily\n\n[1] https://a.org\n[2] https://b.org\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="bracket-urls",
    ),
    pytest.param(
        "| Tip | Why |\n|---|---|\n| Keep a schedule | x |\n| Drink water | y |\n| Walk daily | z |\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="table-noNum",
    ),
    pytest.param(
        "Here is the plan:\n"
        "\n"
        "| Step | Action | Details |\n"
        "| :--- | :--- | :--- |\n"
        "| **1** | **Keep a schedule** | x |\n"
        "| **2** | **Drink water** | y |\n"
        "| **3** | **Walk daily** | z |\n"
        "\n"
        "I hope this helps!",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="table-bold",
    ),
    pytest.param(
        "1. Keep a schedule\n"
        "2. Drink water\n"
        "3. Walk daily\n"
        "\n"
        "| Tip | Cost |\n"
        "|---|---|\n"
        "| Sleep | low |\n"
        "| Eat | high |\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="table-after-list",
    ),
    pytest.param(
        "| # | Keep a schedule |\n|---|---|\n",
        [],
        id="table-header-only",
    ),
    pytest.param(
        "| 1 | Keep a schedule |\n|---|---|\n| 2 | Drink water |\n",
        ["Drink water"],
        id="table-no-outer",
    ),
    pytest.param(
        "| Step | Title |\n"
        "|---|---|\n"
        "| Step 1 | Keep a schedule |\n"
        "| Step 2 | Drink water |\n"
        "| Step 3 | Walk daily |\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="table-step-col",
    ),
    pytest.param(
        "| Step | Title |\n|---|---|\n| 1. Keep a schedule | x |\n| 2. Drink water | y |\n| 3. Walk daily | z |\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="table-dot-col",
    ),
    pytest.param(
        "| # | Tip |\n|---|---|\n| 1 | Keep a schedule<br>every day |\n| 2 | Drink water |\n| 3 | Walk daily |\n",
        ["Keep a schedule every day", "Drink water", "Walk daily"],
        id="table-br",
    ),
    pytest.param(
        "<ol><li>Keep a schedule</li><li>Drink water</li><li>Walk daily</li></ol>",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="html-oneline",
    ),
    pytest.param(
        "<ol>\n"
        "  <li><strong>Keep a schedule</strong>: same hours</li>\n"
        "  <li><strong>Drink water</strong>: 2 l</li>\n"
        "  <li><b>Walk daily</b> - 30 min</li>\n"
        "</ol>\n"
        "<p>I hope this helps!</p>",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="html-strong",
    ),
    pytest.param(
        "<ol>\n"
        "<li>Keep a schedule\n"
        "<ul>\n"
        "<li>wake at 7</li>\n"
        "<li>sleep at 11</li>\n"
        "</ul>\n"
        "</li>\n"
        "<li>Drink water</li>\n"
        "<li>Walk daily<ul><li>sub</li></ul></li>\n"
        "</ol>",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="html-nested",
    ),
    pytest.param(
        "<ul><li>Keep a schedule</li><li>Drink water</li><li>Walk daily</li></ul>",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="html-ul",
    ),
    pytest.param(
        "<ol>\n"
        "<li><p><strong>Keep a schedule</strong></p>\n"
        "<p>Same hours every day.</p></li>\n"
        "<li><p><strong>Drink water</strong></p><p>Two litres.</p></li>\n"
        "<li>Walk daily</li>\n"
        "</ol>",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="html-p-inside",
    ),
    pytest.param(
        "Here are tips: <ol><li>Keep a schedule</li><li>Drink water</li><li>Walk daily</li></ol> Good luck.",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="html-preamble",
    ),
    pytest.param(
        "> Skeleton:\n>\n> 1. Keep a schedule\n>    - sub\n> 2. Drink water\n>\n> 3. Walk daily\n\nI hope this helps!",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="quote-gt-lines",
    ),
    pytest.param(
        "> > 1. Keep a schedule\n> > 2. Drink water\n> > 3. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="quote-nested",
    ),
    pytest.param(
        "1. **Keep a schedule**\n2. **Drink water**\nWater helps every organ work.\n3. **Walk daily**\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="para-under-bold",
    ),
    pytest.param(
        "### 1. Keep a schedule\n### 2. Drink water\nWater helps every organ work.\n### 3. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="h3-para-under-2nd",
    ),
    pytest.param(
        "1. Keep a schedule\n\n---\n\n2. Drink water\n\n---\n\n3. Walk daily\n\n---\n\nIn summary, small steps help.",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="rules",
    ),
    pytest.param(
        "1. Keep a schedule\n\n* * *\n\n2. Drink water\n\n***\n\n3. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="star-rules",
    ),
    pytest.param(
        "**Morning**\n1. Keep a schedule\n2. Drink water\n\n**Evening**\n1. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="restart-sections",
    ),
    pytest.param(
        "1. Keep a schedule\n   1. wake early\n   2. sleep early\n2. Drink water\n3. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="nested-num",
    ),
    pytest.param(
        "1. Keep a schedule\nSame hours every day.\n2. Drink water\nTwo litres.\n3. Walk daily\nThirty minutes.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="desc-line",
    ),
    pytest.param(
        "1. Keep a schedule\n\t- wake early\n2. Drink water\n3. Walk daily",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="tab-indent-sub",
    ),
    pytest.param(
        "Sure! Here is a skeleton for the answer:\n"
        "\n"
        "1. Keep a schedule\n"
        "2. Drink water\n"
        "3. Walk daily\n"
        "\n"
        "In summary, these help.",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="preamble-colon-blank",
    ),
    pytest.param(
        "I. Keep a schedule\n   A. Wake early\n   B. Sleep early\nII. Drink water\nA. Two litres\nIII. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="roman-outline",
    ),
    pytest.param(
        "(i) Keep a schedule\n(ii) Drink water\n(iii) Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="lower-roman-paren",
    ),
    pytest.param(
        "⁃ Keep a schedule\n⁃ Drink water\n⁃ Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="dash-bullet-hyphen",
    ),
    pytest.param(
        "1\\. Keep a schedule\n2\\. Drink water\n3\\. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="escaped-dot",
    ),
    pytest.param(
        "1. **Keep a schedule**:\n   Same hours.\n2. **Drink water**:\n   Two litres.\n3. **Walk daily**:\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="bold-colon-outside",
    ),
    pytest.param(
        "8. A\n9. B\n10. C\n11. D\n",
        ["A", "B", "C", "D"],
        id="numbers-10",
    ),
    pytest.param(
        " 9. Keep a schedule\n10. Drink water\n11. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="padded",
    ),
    pytest.param(
        "🔟 Keep a schedule\n1️⃣1️⃣ Drink water\n",
        ["Keep a schedule", "Drink water"],
        id="emoji-ten",
    ),
    pytest.param(
        "## Step 1: Keep a schedule\n"
        "Same hours.\n"
        "\n"
        "## Step 2: Drink water\n"
        "Two litres.\n"
        "\n"
        "## Step 3: Walk daily\n"
        "Daily.\n"
        "\n"
        "That's it!",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="step-heading-para",
    ),
    pytest.param(
        "**Step 1: Keep a schedule.** Same hours.\n"
        "**Step 2: Drink water.** Two litres.\n"
        "**Step 3: Walk daily.** Daily.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="bold-step-colon-desc",
    ),
    pytest.param(
        "1. **Keep a schedule.** Same hours.\n2. **Drink water.** Two litres.\n3. **Walk daily.** Daily.\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="num-bold-period",
    ),
    pytest.param(
        "1. Keep a schedule\n2. Drink water\n3. Walk daily\n\n**Note:** see a doctor.",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="closing-note-bold",
    ),
    pytest.param(
        "1. Why keep a schedule?\n2. How much water?\n3. When to walk?\n",
        ["Why keep a schedule?", "How much water?", "When to walk?"],
        id="question-titles",
    ),
    pytest.param(
        "1. 8 hours of sleep\n2. 2 litres of water\n3. 30 minutes of walking\n",
        ["8 hours of sleep", "2 litres of water", "30 minutes of walking"],
        id="number-in-title-start",
    ),
    pytest.param(
        "1. 2020: the pandemic\n2. 2021: vaccines\n3. 2022: recovery\n",
        ["2020", "2021", "2022"],
        id="year-title",
    ),
    pytest.param(
        "1. 6:30 wake up\n2. 7:00 breakfast\n3. 8:00 work\n",
        ["6:30 wake up", "7:00 breakfast", "8:00 work"],
        id="time-title",
    ),
    pytest.param(
        "1. Keep a schedule\n2. Drink water\n\nHere are more:\n\n1. Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="closing-then-more",
    ),
    pytest.param(
        "1. Keep a schedule\n2. Drink water\n3. Walk daily\n\n### Conclusion\nSmall steps help.",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="final-thoughts-heading",
    ),
    pytest.param(
        "- Keep a schedule\n  1. wake\n- Drink water\n- Walk daily\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="bullets-then-numbered-sub",
    ),
    pytest.param(
        "**Keep a schedule:**\n- wake\n- sleep\n\n**Drink water:**\n- 2 l\n\n**Walk daily:**\n- 30 min\n",
        ["Keep a schedule", "Drink water", "Walk daily"],
        id="colon-bold-heading-bullets",
    ),
    pytest.param(
        "Improving your time management involves several strategies:\n"
        "\n"
        "### 1. **Set Clear Goals**\n"
        "- **Short-term goals**: daily.\n"
        "- **Long-term goals**: yearly.\n"
        "\n"
        "### 2. **Prioritize Tasks**\n"
        "Use the Eisenhower Matrix:\n"
        "- Urgent and important\n"
        "- Not urgent\n"
        "\n"
        "### 3. **Plan Ahead**\n"
        "Write a plan each evening.\n"
        "\n"
        "By implementing these strategies, you can manage time better.",
        ["Set Clear Goals", "Prioritize Tasks", "Plan Ahead"],
        id="gpt4-h3-bold",
    ),
    pytest.param(
        "Here are some effective ways to deal with stress:\n"
        "\n"
        "1. **Exercise regularly** - Physical activity releases endorphins.\n"
        "\n"
        "2. **Practice mindfulness** - Meditation helps.\n"
        "\n"
        "3. **Get enough sleep** - Aim for 8 hours.\n"
        "\n"
        "Remember that stress is normal.",
        ["Exercise regularly", "Practice mindfulness", "Get enough sleep"],
        id="claude",
    ),
    pytest.param(
        "  Sure, I'd be happy to help! Here are some tips for improving your time management skills:\n"
        "\n"
        "1. Set clear goals: Establish what you want.\n"
        "2. Use a planner: Write it down.\n"
        "3. Prioritize tasks: Focus.\n"
        "\n"
        "I hope these tips help you! Let me know if you have any other questions.",
        ["Set clear goals", "Use a planner", "Prioritize tasks"],
        id="llama2",
    ),
    pytest.param(
        "**1. Identify Stressors:** Know what causes stress.\n"
        "\n"
        "**2. Exercise Regularly:** Move daily.\n"
        "\n"
        "* **Walking:** easy\n"
        "* **Yoga:** calm\n"
        "\n"
        "**3. Sleep Well:** Rest.\n"
        "\n"
        "**In summary,** managing stress takes practice.",
        ["Identify Stressors", "Exercise Regularly", "Sleep Well"],
        id="gemma",
    ),
    pytest.param(
        "**Physical Health**\n"
        "\n"
        "* **Exercise:** move.\n"
        "* **Sleep:** rest.\n"
        "\n"
        "**Mental Health**\n"
        "\n"
        "* **Meditation:** breathe.\n"
        "* **Journaling:** write.\n"
        "\n"
        "Take care!",
        ["Physical Health", "Mental Health"],
        id="gemma-sections",
    ),
    pytest.param(
        "Here's how to make pancakes:\n"
        "\n"
        "Step 1: Gather ingredients\n"
        "- 1/2 cup flour\n"
        "- 2 eggs\n"
        "\n"
        "Step 2: Mix the batter\n"
        "Whisk well.\n"
        "\n"
        "Step 3: Cook\n"
        "Medium heat.\n"
        "\n"
        "Enjoy your pancakes!",
        ["Gather ingredients", "Mix the batter", "Cook"],
        id="steps-recipe",
    ),
    pytest.param(
        "I. Introduction\n   A. Background\n   B. Thesis\nII. Body\n   A. Point\nIII. Conclusion\n",
        ["Introduction", "Body", "Conclusion"],
        id="outline",
    ),
    pytest.param(
        "Here's a comparison:\n"
        "\n"
        "| Feature | Python | JavaScript |\n"
        "|---------|--------|------------|\n"
        "| Typing | Dynamic | Dynamic |\n"
        "| Use | Backend | Frontend |\n"
        "\n"
        "In short, both are useful.",
        ["Typing", "Use"],
        id="table-cmp",
    ),
    pytest.param(
        "1. Install the package:\n"
        "   ```bash\n"
        "   pip install x\n"
        "   ```\n"
        "2. Import it:\n"
        "```python\n"
        "import x\n"
        "1. not a point\n"
        "```\n"
        "3. Use it.\n",
        ["Install the package", "Import it", "Use it"],
        id="code-items",
    ),
    pytest.param(
        "1️⃣ **Plan your day** – write a list\n"
        "2️⃣ **Limit distractions** – phone away\n"
        "3️⃣ **Take breaks** – every hour\n"
        "\n"
        "You've got this! 💪",
        ["Plan your day", "Limit distractions", "Take breaks"],
        id="emoji-4o",
    ),
    pytest.param(
        "Certainly! Here are some tips:\n"
        "\n"
        "1. **Plan ahead**：make a list.\n"
        "2. **Focus**：one task.\n"
        "3. **Rest**：sleep well.\n",
        ["Plan ahead", "Focus", "Rest"],
        id="qwen-fw",
    ),
    pytest.param(
        "Pros:\n1. Fast\n2. Cheap\n\nCons:\n1. Loud\n2. Big\n",
        ["Fast", "Cheap", "Loud", "Big"],
        id="pros-cons",
    ),
    pytest.param(
        "1. This is a long title that\n   wraps onto the next line\n2. Short one\n3. Third\n",
        ["This is a long title that", "Short one", "Third"],
        id="wrapped",
    ),
    pytest.param(
        "1.\xa0Plan\n2.\xa0Focus\n3.\xa0Rest\n",
        ["Plan", "Focus", "Rest"],
        id="nbsp",
    ),
    pytest.param(
        "**1:** Plan\n**2:** Focus\n**3:** Rest\n",
        ["Plan", "Focus", "Rest"],
        id="bold-colon-num",
    ),
    pytest.param(
        "1. **Plan**: Make a list.\n"
        "   - Use an app.\n"
        "   - Or paper.\n"
        "2. **Focus**: One task.\n"
        "3. **Rest**: Sleep.\n"
        "\n"
        "These tips should help.",
        ["Plan", "Focus", "Rest"],
        id="mistral-sub",
    ),
    pytest.param(
        "Answer:\n1. Plan\n2. Focus\n3. Rest",
        ["Plan", "Focus", "Rest"],
        id="answer-pre",
    ),
    pytest.param(
        "Skeleton:\n1. Plan\n2. Focus\n\nExpansion:\n1. Plan: make a list of tasks.\n2. Focus: do one thing.",
        ["Plan", "Focus"],
        id="skeleton-then-expand",
    ),
    pytest.param(
        "## 1. Plan\n"
        "\n"
        "Make a list of tasks for the day.\n"
        "\n"
        "## 2. Focus\n"
        "\n"
        "Do one thing at a time.\n"
        "\n"
        "## 3. Rest\n"
        "\n"
        "Sleep well.\n"
        "\n"
        "## Conclusion\n"
        "\n"
        "Small steps.",
        ["Plan", "Focus", "Rest"],
        id="h2-numbers-para",
    ),
    pytest.param(
        "## 1. Plan\nText.\n## 2. Focus\nText.\n## 3. Conclusion\nText.",
        ["Plan", "Focus", "Conclusion"],
        id="h2-conclusion-numbered",
    ),
    pytest.param(
        "a) Plan\nb) Focus\nc) Rest\n",
        ["Plan", "Focus", "Rest"],
        id="lettered-top",
    ),
    pytest.param(
        "1. Plan\n- list\n- app\n2. Focus\n3. Rest\n",
        ["Plan", "Focus", "Rest"],
        id="dash-sub-num",
    ),
    pytest.param(
        "   1. Plan\n   2. Focus\n   3. Rest\n",
        ["Plan", "Focus", "Rest"],
        id="spaces-indent-all",
    ),
    pytest.param(
        "1. Plan\n\n   Make a list.\n\n2. Focus\n\n   One thing.\n\n3. Rest\n\n   Sleep.\n\nGood luck!",
        ["Plan", "Focus", "Rest"],
        id="desc-under-each-indented",
    ),
    pytest.param(
        "Tips:\n<ul>\n  <li>Plan</li>\n  <li>Focus</li>\n  <li>Rest</li>\n</ul>\nThat's all.",
        ["Plan", "Focus", "Rest"],
        id="html-ul-in-md",
    ),
    pytest.param(
        "Here's the outline:\n"
        "\n"
        "> **1. Plan**\n"
        "> Make a list.\n"
        ">\n"
        "> **2. Focus**\n"
        "> One thing.\n"
        ">\n"
        "> **3. Rest**\n"
        "> Sleep.\n",
        ["Plan", "Focus", "Rest"],
        id="quote-claude",
    ),
    pytest.param(
        "[1] **Plan**: make a list\n[2] **Focus**: one thing\n[3] **Rest**: sleep\n",
        ["Plan", "Focus", "Rest"],
        id="bracket-with-desc",
    ),
    pytest.param(
        "1/ **Plan** – list\n2/ **Focus** – one thing\n3/ **Rest** – sleep\n",
        ["Plan", "Focus", "Rest"],
        id="slash-bold",
    ),
    pytest.param(
        "| # | Tip | Why |\n"
        "|:-:|-----|-----|\n"
        "| 1 | **Plan** | less stress |\n"
        "| 2 | **Focus** | faster |\n"
        "| 3 | **Rest** | energy |\n",
        ["Plan", "Focus", "Rest"],
        id="table-num-bold-title",
    ),
    pytest.param(
        "# | Tip | Why\n--|-----|----\n1 | Plan | less stress\n2 | Focus | faster\n",
        ["Plan", "Focus"],
        id="table-no-pipe-edges",
    ),
]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "titles"), ANSWERS)
def test_answer_styles_are_read_whole_and_streamed(text: str, titles: list[str], crlf: bool) -> None:
    check_read_whole_and_streamed(text, titles, crlf=crlf)
