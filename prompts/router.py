"""Prompt for the optional LLM router (``router="llm"``): the served model sorts a question into one of
three kinds, after the three-way idea of the SoT paper's prompting router (written for sotrag, not the
paper's text). Only kind A goes to Skeleton-of-Thought."""

from __future__ import annotations

from sotrag.prompts.messages import ChatMessage

ROUTER_PROMPT_VERSION = "router-v1"

ROUTER_SYSTEM = "You sort questions by the shape of their best answer. Reply with one letter only."

ROUTER_INSTRUCTION = (
    "Which kind is the best answer to the question below?\n"
    "A: a list of several points that can each be written on its own, in any order, without the others "
    "(for example tips, reasons, factors, pros and cons, ideas).\n"
    "B: a list of steps or points where each one needs the ones before it (for example a calculation, a "
    "proof, code, an estimate built up step by step).\n"
    "C: not a list at all (for example a single fact, a short reply, a story, a poem, a letter, a role to "
    "play, a joke).\n\n"
    "Question:\n{question}\n\n"
    "Reply with A, B or C."
)


def router_messages(question: str) -> list[ChatMessage]:
    return [
        ChatMessage("system", ROUTER_SYSTEM),
        ChatMessage("user", ROUTER_INSTRUCTION.format(question=question.strip())),
    ]
