"""A JSON schema checked here, before a remote vLLM server sees it.

Why: a schema the server's grammar compiler (xgrammar) rejects used to come back from the server as a 400, after
the answer's stream had started, as a 500 naming the server. Compiling it here (xgrammar is installed with vLLM;
the result is cached) refuses it as the client's mistake before anything is sent. Without xgrammar the server's
own refusal stands (``EngineRejected`` as well, from its 400).
"""

from __future__ import annotations

import functools
import re

from sotrag.app.engines.base import EngineRejected

# xgrammar's messages start with its log prefix: "[23:02:13] /path/to/json_schema_converter.cc:4944: ".
_LOG_PREFIX = re.compile(r"^\[[\d:.]+\]\s+\S+:\d+:\s*")


@functools.lru_cache(maxsize=64)
def _schema_problem(schema: str) -> str | None:
    try:
        import xgrammar
    except ImportError:
        return None
    try:
        xgrammar.Grammar.from_json_schema(schema, any_whitespace=False, separators=(",", ":"))
    except Exception as exc:  # xgrammar raises RuntimeError/ValueError/its own types, by version
        lines = [_LOG_PREFIX.sub("", line) for line in str(exc).strip().splitlines()]
        return (lines or [type(exc).__name__])[0][:200]
    return None


def check_json_schema(schema: str) -> None:
    """``EngineRejected`` (param ``response_format``) when ``schema`` (JSON text) cannot be used for structured
    output; nothing when it can, or when it cannot be checked here."""
    problem = _schema_problem(schema)
    if problem is not None:
        raise EngineRejected(
            f"the JSON schema cannot be used for structured output: {problem}", param="response_format"
        )
