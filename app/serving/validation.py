"""Client-input checks shared by every surface, and user-facing text for errors that must name no internals.

Everything a client sends as text goes through ``check_text`` (JSON allows ``"\\ud800"``, a lone surrogate, which
no tokenizer can encode: that used to reach the engine and come back as a 500). ``public_message`` turns an
exception into one line without server paths, so even an unexpected message cannot leak where files live.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from sotrag.app.config import LimitsConfig
from sotrag.app.request import SURROGATE, InvalidQuestion


class TextTooLong(InvalidQuestion):
    """A question or history over the server's limits or the model's context (413)."""


_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?/(?:[^\s/'\"<>:]+/)+[^\s/'\"<>:,;)]*")


def check_text(value: str, what: str = "text") -> str:
    """``value`` unchanged, or ``InvalidQuestion`` when it is not valid Unicode (a lone surrogate)."""
    m = SURROGATE.search(value)
    if m:
        raise InvalidQuestion(f"{what} is not valid Unicode (a lone surrogate at character {m.start()})")
    return value


def _valid_unicode(value: str) -> str:
    m = SURROGATE.search(value)
    if m:
        raise ValueError(f"not valid Unicode (a lone surrogate at character {m.start()})")
    return value


# For request models: pydantic reports the field, and the request is refused (422) before any work.
UnicodeText = Annotated[str, AfterValidator(_valid_unicode)]
valid_unicode = _valid_unicode  # for text types with more constraints, checked before it (a length)


def _json_number(value: object) -> object:
    """Only a JSON number: ``1`` and ``1.0``, never ``"1"`` or ``true`` (pydantic's float would take both)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number_type", "Input should be a number")
    return value


# One type, so a wrong value is one error ("Input should be a number"), not one per branch of int | float.
JSONNumber = Annotated[float, BeforeValidator(_json_number)]


def check_lengths(question: str, history: Sequence[tuple[str, str]], limits: LimitsConfig) -> None:
    """The server's own limits on question and history size, before anything is tokenized."""
    check_text(question, "the question")
    for i, (q, a) in enumerate(history):
        check_text(q, f"history turn {i + 1}")
        check_text(a, f"history turn {i + 1}")
    if len(question) > limits.max_question_chars:
        raise TextTooLong(
            f"the question is {len(question)} characters, over the limit of {limits.max_question_chars}"
        )
    size = sum(len(q) + len(a) for q, a in history)
    if size > limits.max_history_chars:
        raise TextTooLong(f"the history is {size} characters, over the limit of {limits.max_history_chars}")


def public_message(exc: BaseException) -> str:
    """One line of ``exc``'s message with filesystem paths replaced, for clients."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return _PATH.sub("<path>", text)[:500]


def public_model_name(model: str) -> str:
    """A hub id as it is; a local model folder by its last component only (clients need no server paths)."""
    if model.startswith(("/", "~", ".")) or Path(model).expanduser().exists():
        return Path(model).name or "model"
    return model
