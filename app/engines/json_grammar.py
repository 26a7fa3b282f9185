"""A JSON schema as xgrammar's grammar for compact JSON: one function that both the vLLM engine (to constrain
decoding) and the OpenAI route (to refuse a bad ``response_format`` before a stream starts) call, so the two can
never disagree on which schemas work.

Light on purpose: xgrammar is imported only when a schema is compiled.
"""

from __future__ import annotations

import functools
import re

# xgrammar's C++ errors start with "[hh:mm:ss] /its/source/file.cc:line: ": its internals, not the client's.
_XGRAMMAR_PREFIX = re.compile(r"^\s*\[\d{1,2}:\d{2}:\d{2}\]\s*\S+:\d+:\s*")


class SchemaError(ValueError):
    """A JSON schema that cannot be used for structured output; the message is clean enough for a client."""


def clean_reason(exc: BaseException) -> str:
    """The first line of a compiler error, without xgrammar's timestamp and source location, at most 200
    characters."""
    first = (str(exc).strip().splitlines() or [""])[0]
    reason = _XGRAMMAR_PREFIX.sub("", first).strip()
    return (reason or type(exc).__name__)[:200]


@functools.lru_cache(maxsize=64)
def compact_json_grammar(schema: str) -> str | None:
    """The schema (JSON text) as xgrammar's grammar for compact JSON (no free whitespace); None without xgrammar
    (vLLM then takes the schema as it is). Why: with whitespace allowed a model may write it until max_tokens cuts
    the JSON (small ones do), and vLLM 0.32 turns whitespace off only for a whole engine. A schema xgrammar cannot
    use is a ``SchemaError`` (the client's 4xx), raised before vLLM sees it."""
    try:
        import xgrammar
    except ImportError:
        return None
    try:
        return str(xgrammar.Grammar.from_json_schema(schema, any_whitespace=False, separators=(",", ":")))
    except Exception as exc:
        raise SchemaError(f"the JSON schema cannot be used for structured output: {clean_reason(exc)}") from None
