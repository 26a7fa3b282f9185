"""Assemble the chat messages of every request of one question.

Prefix ordering (why the prompts look the way they do): vLLM's prefix cache reuses the KV blocks of any
token prefix it has seen, so the cheapest SoT is one whose requests share the longest possible prefix.
Every request of one question therefore starts with the same messages, in this order:

1. system text (with the retrieved passages, when the answer is grounded),
2. earlier turns (question and final answer only),
3. the question,

and a point request goes on with exactly the skeleton request's prompt, then the skeleton the model wrote
(as the assistant's turn), and only then the point-specific instruction and the point's open prefill. So
each point request is the skeleton request plus its output plus ~30 tokens of its own: every block before
that is served from the cache. The stage-specific text always comes last.

Data, not instructions: passages are quoted in ``<passage>`` blocks, and every text that comes from a user
or a document (passage text and label, question, history) goes through ``as_data``, so none of it can close
a passage block or forge one. (Special tokens are the engine's side: it encodes message content as plain
text, see ``sotrag.app.engines.chat_ids``.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sotrag.prompts import templates as t
from sotrag.prompts.messages import ChatMessage
from sotrag.retrieval.types import Passage

Turn = tuple[str, str]  # (user question, final assembled answer)


# A "<" that starts a passage tag ("<passage", "</passage", any case, any spacing).
_PASSAGE_TAG = re.compile(r"<(?=\s*/?\s*passage)", re.IGNORECASE)


def as_data(text: str) -> str:
    """User or document text, safe to quote in a prompt: a passage tag in it is neutralised ("<" becomes
    "&lt;"), so it cannot close the passage block it sits in nor open a forged one."""
    return _PASSAGE_TAG.sub("&lt;", text)


def _attribute(value: str) -> str:
    """A label as a quoted tag attribute: on one line, without quotes or angle brackets that could end it."""
    return " ".join(value.split()).replace('"', "&quot;").replace("<", "&lt;")


def format_passage(n: int, passage: Passage) -> str:
    return t.PASSAGE.format(n=n, label=_attribute(passage.label), text=as_data(passage.text.strip()))


def format_passages(numbered: Sequence[tuple[int, Passage]]) -> str:
    return "\n\n".join(format_passage(n, p) for n, p in numbered)


def grounded_instruction() -> str:
    """The grounded system text without any passage: what the passages' share of it is counted against."""
    return t.SYSTEM_GROUNDED.format(passages="")


def system_message(passages: Sequence[Passage] = ()) -> ChatMessage:
    if not passages:
        return ChatMessage("system", t.SYSTEM)
    return ChatMessage("system", t.SYSTEM_GROUNDED.format(passages=format_passages(list(enumerate(passages, 1)))))


def shared_prefix(passages: Sequence[Passage] = (), history: Sequence[Turn] = ()) -> list[ChatMessage]:
    """System text, earlier turns: identical across every request of one question."""
    messages = [system_message(passages)]
    for user, assistant in history:
        messages += [ChatMessage("user", as_data(user)), ChatMessage("assistant", as_data(assistant))]
    return messages


def normal_messages(question: str, passages: Sequence[Passage] = (), history: Sequence[Turn] = ()) -> list[ChatMessage]:
    return [*shared_prefix(passages, history), ChatMessage("user", as_data(question))]


def skeleton_user_text(question: str, *, min_points: int, max_points: int, min_words: int, max_words: int) -> str:
    instruction = t.SKELETON_INSTRUCTION.format(
        min_points=min_points, max_points=max_points, min_words=min_words, max_words=max_words
    )
    return f"{as_data(question)}\n\n{instruction}"


def skeleton_messages(
    question: str,
    passages: Sequence[Passage] = (),
    history: Sequence[Turn] = (),
    *,
    min_points: int = 3,
    max_points: int = 10,
    min_words: int = 3,
    max_words: int = 8,
) -> list[ChatMessage]:
    user = skeleton_user_text(
        question, min_points=min_points, max_points=max_points, min_words=min_words, max_words=max_words
    )
    return [*shared_prefix(passages, history), ChatMessage("user", user)]


def point_messages(
    skeleton_request: Sequence[ChatMessage],
    skeleton_text: str,
    index: int,
    title: str,
    *,
    sentences: str = "1 to 2",
    extra_passages: Sequence[tuple[int, Passage]] = (),
) -> list[ChatMessage]:
    """The skeleton request, the skeleton as the assistant's answer, then point ``index``'s instruction and
    its open prefill "index. title" (render with ``continue_final_message=True``). Passages retrieved for
    this point alone, with their [n] numbers, go into the point's own message, after the shared part."""
    extra = t.POINT_PASSAGES.format(passages=format_passages(extra_passages)) if extra_passages else ""
    return [
        *skeleton_request,
        ChatMessage("assistant", skeleton_text.rstrip()),
        ChatMessage("user", extra + t.POINT_INSTRUCTION.format(index=index, sentences=sentences)),
        ChatMessage("assistant", t.POINT_PREFILL.format(index=index, title=title)),
    ]
