"""A JSON schema as xgrammar's grammar for compact JSON: one function that both the vLLM engine (to constrain
decoding) and the OpenAI route (to refuse a bad ``response_format`` before a stream starts) call, so the two can
never disagree on which schemas work.

What a schema may cost is bounded first (``check_schema``), before any conversion: xgrammar's conversion and vLLM's
grammar compilation grow steeply with a schema's properties, nesting and repetition counts, and one compilation
holds every structured-output request of the engine behind it. The limits are chosen from measurements
(benchmarks/schema_cost.py, docs/service.md "OpenAI parameters").

Light on purpose: xgrammar is imported only when a schema is compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class SchemaLimits:
    """What one client schema may hold. ``max_nodes``: properties, enum values, const/anyOf/oneOf/allOf branches and
    tuple items together, counted with every ``$ref`` expanded where it is used (so a chain of definitions that
    doubles per level counts as its expansion); ``max_count``: any item or property count bound;
    ``max_string_bounds``: every string length bound (``minLength``, ``maxLength``) and every repetition count of
    every ``pattern`` (counted twice: a repeated pattern piece costs more to compile), summed: a bounded string
    compiles to a rule per character position, each checked against the whole vocabulary."""

    max_bytes: int = 16_384
    max_depth: int = 40  # JSON nesting of the schema itself (an object level is two: properties, then the property)
    max_expanded_depth: int = 128  # the same with every $ref expanded where it is used
    max_nodes: int = 256
    max_refs: int = 64
    max_count: int = 1_000
    max_string_bounds: int = 32
    max_pattern_chars: int = 256


LIMITS = SchemaLimits()
_STRING_BOUNDS = ("minLength", "maxLength")
_COUNTS = ("minItems", "maxItems", "minProperties", "maxProperties", "minContains",
           "maxContains")
_BRANCHES = ("anyOf", "oneOf", "allOf", "prefixItems", "enum")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def check_schema(schema: Any, limits: SchemaLimits = LIMITS) -> None:
    """Refuse (``SchemaError``) a schema over ``limits`` before anything converts or compiles it. Linear in the
    schema's size, and the size is checked first."""
    if not isinstance(schema, (dict, bool)):
        raise SchemaError("the JSON schema must be an object")
    try:  # the size first: measured in C, so a client's megabyte costs the loop little before it is refused
        size = len(json.dumps(schema, separators=(",", ":")))
    except (RecursionError, ValueError):
        raise SchemaError(f"the JSON schema is nested too deeply (at most {limits.max_depth} levels)") from None
    if size > limits.max_bytes:
        raise SchemaError(f"the JSON schema is too large: {size} bytes (at most {limits.max_bytes})")
    _check_depth(schema, limits.max_depth)
    refs = 0
    bounds = 0
    for node in _nodes(schema):
        for key in _COUNTS:
            if _bound(node.get(key)) > limits.max_count:
                raise SchemaError(f"the JSON schema's {key} is over {limits.max_count}")
        bounds += sum(_bound(node.get(key)) for key in _STRING_BOUNDS)
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            bounds += _pattern_counts(pattern, limits)
        if bounds > limits.max_string_bounds:
            raise SchemaError("the JSON schema's string length bounds and pattern repetition counts add up to over "
                              f"{limits.max_string_bounds}")
        ref = node.get("$ref")
        if ref is not None:
            refs += 1
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaError("the JSON schema's $ref must point inside the schema (#/$defs/...)")
    if refs > limits.max_refs:
        raise SchemaError(f"the JSON schema has {refs} $refs (at most {limits.max_refs})")
    _check_expanded(schema, limits)


def _check_depth(schema: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise SchemaError(f"the JSON schema is nested too deeply (at most {max_depth} levels)")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _nodes(schema: Any) -> list[dict[str, Any]]:
    """Every object in the schema (subschemas, and any other object it holds)."""
    found: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def _bound(value: Any) -> int:
    """A count bound as a number to add up: 0 when it is not a number, huge when not finite (NaN compares false)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return 0
    return int(min(value, 10**9)) if math.isfinite(value) else 10**9


def _pattern_counts(pattern: str, limits: SchemaLimits) -> int:
    """The pattern's repetition counts (``{n}``, ``{n,m}``) summed; ``SchemaError`` for a pattern too long."""
    if len(pattern) > limits.max_pattern_chars:
        raise SchemaError(f"a pattern of the JSON schema is {len(pattern)} characters (at most "
                          f"{limits.max_pattern_chars})")
    return 2 * sum(min(int(n[:10]), 10**9) for match in _QUANTIFIER.finditer(pattern) for n in match.groups() if n)


def _check_expanded(schema: Any, limits: SchemaLimits) -> None:
    """Count what a compiler sees with every local ``$ref`` expanded where it is used (a reference to a definition
    already being expanded, i.e. recursion, counts once): refuse as soon as the count passes ``max_nodes`` or the
    expanded nesting passes ``max_expanded_depth``. Iterative: a chain of references cannot exhaust the stack."""
    count = 0
    stack: list[tuple[Any, frozenset[str], int]] = [(schema, frozenset(), 1)]
    while stack:
        value, expanding, depth = stack.pop()
        if depth > limits.max_expanded_depth:
            raise SchemaError(f"the JSON schema is nested too deeply with its $refs expanded (at most "
                              f"{limits.max_expanded_depth} levels)")
        if isinstance(value, list):
            stack.extend((item, expanding, depth + 1) for item in value)
            continue
        if not isinstance(value, dict):
            continue
        properties = value.get("properties")
        count += len(properties) if isinstance(properties, dict) else 0
        for key in _BRANCHES:
            branch = value.get(key)
            count += len(branch) if isinstance(branch, list) else 0
        if count > limits.max_nodes:
            raise SchemaError(f"the JSON schema is too large: over {limits.max_nodes} properties, enum values and "
                              "branches (with each $ref counted where it is used)")
        ref = value.get("$ref")
        if isinstance(ref, str) and ref not in expanding:
            stack.append((_resolve(schema, ref), expanding | {ref}, depth + 1))
        stack.extend((child, expanding, depth + 1) for key, child in value.items()
                     if key not in ("$defs", "definitions", "enum", "const"))


def _resolve(schema: Any, ref: str) -> Any:
    """The local reference's target, or None (the compiler reports a dangling reference itself)."""
    target: Any = schema
    for part in ref.lstrip("#").split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target


@functools.cache
def load_xgrammar() -> Any | None:
    """xgrammar, imported once (None without it). Apart from the conversion, so that a caller bounding the
    conversion's time does not count the import's seconds (a cold import on a busy machine)."""
    try:
        import xgrammar
    except ImportError:
        return None
    return xgrammar


@functools.lru_cache(maxsize=64)
def compact_json_grammar(schema: str) -> str | None:
    """The schema (JSON text) as xgrammar's grammar for compact JSON (no free whitespace); None without xgrammar
    (vLLM then takes the schema as it is). Why: with whitespace allowed a model may write it until max_tokens cuts
    the JSON (small ones do), and vLLM 0.32 turns whitespace off only for a whole engine. A schema xgrammar cannot
    use, or one over ``LIMITS`` (``check_schema``), is a ``SchemaError`` (the client's 4xx), raised before vLLM sees
    it."""
    try:
        parsed = json.loads(schema)
    except (ValueError, RecursionError):
        raise SchemaError("the JSON schema is not valid JSON") from None
    check_schema(parsed)
    xgrammar = load_xgrammar()
    if xgrammar is None:
        return None
    try:
        return str(xgrammar.Grammar.from_json_schema(schema, any_whitespace=False, separators=(",", ":")))
    except Exception as exc:
        raise SchemaError(f"the JSON schema cannot be used for structured output: {clean_reason(exc)}") from None
