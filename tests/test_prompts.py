"""Prompt assembly: every request of one question shares the longest possible prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotrag.app.engines import chat_ids
from sotrag.prompts import build
from sotrag.retrieval.types import Passage


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):  # -> PreTrainedTokenizerFast
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def render(tokenizer, messages, **kw) -> str:
    as_dicts = [{"role": m.role, "content": m.content} for m in messages]
    cont = kw.get("continue_final_message", False)
    return tokenizer.apply_chat_template(as_dicts, tokenize=False, add_generation_prompt=not cont, **kw)


PASSAGES = [Passage(text="Use Depends for shared logic.", source="tutorial/deps.md", heading="Dependencies")]
HISTORY = [("What is FastAPI?", "A web framework.")]


def test_point_prompt_extends_skeleton_prompt_and_skeleton(tokenizer) -> None:
    skeleton_msgs = build.skeleton_messages("How do I share logic?", PASSAGES, HISTORY)
    skeleton_prompt = render(tokenizer, skeleton_msgs)
    skeleton_text = "1. Write a dependency\n2. Declare it in the path\n"
    prompts = [
        render(
            tokenizer,
            build.point_messages(skeleton_msgs, skeleton_text, i, title),
            continue_final_message=True,
        )
        for i, title in enumerate(["Write a dependency", "Declare it in the path"], start=1)
    ]
    for i, prompt in enumerate(prompts, start=1):
        assert prompt.startswith(skeleton_prompt + skeleton_text.rstrip())
        assert prompt.endswith(f"{i}. {['Write a dependency', 'Declare it in the path'][i - 1]}")
    # token level, as the engine encodes them: the skeleton prompt's ids start every point prompt's ids (vLLM's
    # block hashes match), and the ids stand for exactly the template's text
    skeleton = chat_ids.encode_chat(tokenizer, skeleton_msgs)
    assert skeleton.text == skeleton_prompt
    titles = ["Write a dependency", "Declare it in the path"]
    for i, (title, prompt) in enumerate(zip(titles, prompts, strict=True), start=1):
        msgs = build.point_messages(skeleton_msgs, skeleton_text, i, title)
        point = chat_ids.encode_chat(tokenizer, msgs, continue_final_message=True)
        assert point.text == prompt
        assert point.token_ids[: len(skeleton.token_ids)] == skeleton.token_ids
        assert tokenizer.decode(point.token_ids) == prompt


def test_grounded_system_text_numbers_passages_and_history_precedes_question() -> None:
    msgs = build.normal_messages("How do I share logic?", PASSAGES, HISTORY)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert '<passage n="1" source="tutorial/deps.md > Dependencies">\nUse Depends for shared logic.\n</passage>' in (
        msgs[0].content
    )
    assert msgs[-1].content == "How do I share logic?"


def test_skeleton_and_normal_share_system_history_and_question_text() -> None:
    normal = build.normal_messages("Q?", PASSAGES, HISTORY)
    skeleton = build.skeleton_messages("Q?", PASSAGES, HISTORY, min_points=2, max_points=4)
    assert normal[:-1] == skeleton[:-1]
    assert skeleton[-1].content.startswith("Q?\n\n") and "2 to 4 points" in skeleton[-1].content
