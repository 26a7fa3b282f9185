"""Chat prompts as token ids in which only the chat template can make special tokens.

Why: encoding the rendered template text with special-token parsing on turns any role marker written in a
document, a question or a history turn (``<|im_start|>system``) into a real role token, which is prompt
injection. So the template is rendered with a unique sentinel in place of each message's content, the
template's own pieces are encoded with special tokens, and each content is encoded as plain text
(``split_special_tokens=True``): a marker in it stays the characters it is. Works with any Hugging Face
tokenizer (vLLM's in-process one, or a local copy beside a remote server).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sotrag.app.engines.base import ChatPrompt, EngineError, EngineRejected
from sotrag.app.engines.lru import LRU
from sotrag.prompts.messages import ChatMessage

# A content's place in the rendered template: "<<sotrag-NONCE-INDEX>>". One pattern for every nonce: compiling a
# pattern per call (a fresh nonce each time) was a large share of a point prompt's build, which delays the points
# after the skeleton (docs/archive/benchmarks-history.md, "Where the SoT overhead went").
_SENTINEL = re.compile(r"<<sotrag-([0-9A-Za-z_-]+)-(\d+)>>")


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """``text`` as plain text: no special tokens added, and none parsed out of it."""
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


class PlainEncoder:
    """``encode_plain`` that remembers what it encoded (thread-safe): long texts in an ``LRU`` bounded in entries
    and held ids, short ones in their own ``LRU`` bounded in entries, so a flood of short texts never pushes out
    the long contents.

    Why: one SoT answer encodes the same contents again and again: the system text with the retrieved passages,
    the question and the skeleton text for the skeleton and then for every point, each a tokenizer call on the
    event loop between the skeleton's end and the points reaching the engine (``benchmarks/pipeline_cpu.py
    --tokenizer``, docs/BENCHMARKS.md). Encoding is deterministic, so a hit is exact. ``max_ids`` bounds the long
    texts' memory (~40 bytes an id with its text); a short text is under ``min_chars`` characters, so
    ``max_short`` entries hold at most that many characters and ids each."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        min_chars: int = 256,
        max_entries: int = 256,
        max_ids: int = 500_000,
        max_short: int = 2048,
    ) -> None:
        self.tokenizer = tokenizer
        self.min_chars = min_chars
        self.max_ids = max_ids
        self._ids = LRU(max_entries, max_weight=max_ids)
        self._short = LRU(max_short)
        self._lock = threading.Lock()

    def __call__(self, text: str) -> tuple[int, ...]:
        with self._lock:
            hit = self._cache(text).get_fresh(text)
        if hit is not None:
            return tuple(hit)
        return self.remember(text, self._encode(text))

    def cached(self, text: str) -> bool:
        with self._lock:
            return text in self._cache(text)

    def remember(self, text: str, ids: Sequence[int]) -> tuple[int, ...]:
        """Keep ``ids`` as ``text``'s encoding (made elsewhere, e.g. off the event loop, by an equal encoder)."""
        ids = tuple(ids)
        short = len(text) < self.min_chars
        if short or len(ids) <= self.max_ids:  # one long text over the whole budget is not kept
            with self._lock:
                self._cache(text).put(text, ids, weight=1 if short else len(ids))
        return ids

    def _cache(self, text: str) -> LRU:
        return self._short if len(text) < self.min_chars else self._ids

    def _encode(self, text: str) -> list[int]:
        return encode_plain(self.tokenizer, text)


def encode_template(tokenizer: Any, text: str) -> list[int]:
    """A piece of the chat template itself: its special-token markers become special tokens."""
    return list(tokenizer.encode(text, add_special_tokens=False))


class TemplateEncoder(PlainEncoder):
    """``encode_template`` with ``PlainEncoder``'s caches: a chat template has few distinct pieces
    ("<|im_end|>\n<|im_start|>user\n"), and every prompt encodes 3-6 of them, a tokenizer call each."""

    def _encode(self, text: str) -> list[int]:
        return encode_template(self.tokenizer, text)


def special_token_ids(tokenizer: Any) -> frozenset[int]:
    """Every id that is a special token: the named ones and every added token flagged special (a chat
    template's role markers often are only the latter)."""
    ids = set(getattr(tokenizer, "all_special_ids", ()) or ())
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, token in added.items() if getattr(token, "special", False))
    return frozenset(int(i) for i in ids)


def render_chat(tokenizer: Any, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
    """The chat template applied as text (for logs; requests use ``encode_chat``)."""
    pairs = [(m.role, m.content) for m in messages]
    while True:
        try:
            return _apply(tokenizer, pairs, continue_final_message)
        except Exception as exc:
            pairs = _merge_system(pairs, exc)


def encode_chat(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    *,
    continue_final_message: bool = False,
    plain: Callable[[str], Sequence[int]] | None = None,
    template: Callable[[str], Sequence[int]] | None = None,
) -> ChatPrompt:
    """``messages`` through the chat template, as a ``ChatPrompt`` whose content is plain text (encoded by
    ``plain``, an engine's ``PlainEncoder``, where given; the template's pieces by ``template``, its
    ``TemplateEncoder``)."""
    return encode_chat_with(
        lambda pairs, cont: _apply(tokenizer, pairs, cont),
        template or (lambda text: encode_template(tokenizer, text)),
        plain or (lambda text: encode_plain(tokenizer, text)),
        messages,
        continue_final_message=continue_final_message,
    )


def encode_chat_with(
    render: Callable[[list[tuple[str, str]], bool], str],
    template_ids: Callable[[str], Sequence[int]],
    plain_ids: Callable[[str], Sequence[int]],
    messages: Sequence[ChatMessage],
    *,
    continue_final_message: bool = False,
    nonce: str | None = None,
) -> ChatPrompt:
    """``encode_chat`` over any tokenizer: ``render`` applies the chat template to (role, content) pairs
    (raising when the template refuses them), ``template_ids`` encodes a template piece with special tokens,
    ``plain_ids`` encodes content as plain text. A fixed ``nonce`` lets ``render`` cache by roles."""
    pairs = [(m.role, m.content) for m in messages]
    nonce = nonce or secrets.token_hex(8)
    while True:
        try:
            with_sentinels = [(role, f"<<sotrag-{nonce}-{i}>>") for i, (role, _) in enumerate(pairs)]
            rendered = render(with_sentinels, continue_final_message)
            break
        except Exception as exc:
            pairs = _merge_system(pairs, exc)

    token_ids: list[int] = []
    text = ""
    seen = [0] * len(pairs)
    token_spans: list[tuple[int, int] | None] = [None] * len(pairs)
    text_spans: list[tuple[int, int] | None] = [None] * len(pairs)
    pos = 0
    for match in _SENTINEL.finditer(rendered):
        if match.group(1) != nonce:  # not ours: template text (one pattern, compiled once, for every nonce)
            continue
        piece = rendered[pos : match.start()]
        token_ids += template_ids(piece) if piece else []
        text += piece
        i = int(match.group(2))
        content = pairs[i][1]
        start_tok, start_chr = len(token_ids), len(text)
        token_ids += plain_ids(content) if content else []
        text += content
        seen[i] += 1
        token_spans[i], text_spans[i] = (start_tok, len(token_ids)), (start_chr, len(text))
        pos = match.end()
    token_ids += template_ids(rendered[pos:]) if rendered[pos:] else []
    text += rendered[pos:]
    once = [n == 1 for n in seen]
    return ChatPrompt(
        text=text,
        token_ids=tuple(token_ids),
        token_spans=tuple(span if ok else None for span, ok in zip(token_spans, once, strict=True)),
        text_spans=tuple(span if ok else None for span, ok in zip(text_spans, once, strict=True)),
    )


def encode_avoiding(text: str, markers: Sequence[str], tokenize: Callable[[str], list[int]]) -> list[int]:
    """``text`` encoded by ``tokenize`` (an encoder that DOES turn special-token strings into special tokens,
    such as vLLM's ``/tokenize``) so that none of ``markers`` can come out whole: the text is cut at every
    occurrence of a marker, each marker occurrence is encoded in two halves (each half again avoiding the
    markers), and every piece is encoded on its own. A piece holds no marker string, so an encoder that only
    matches special tokens by their exact string makes none from it. Markers of one character cannot be
    split and are left out (the caller says so)."""
    usable = sorted({m for m in markers if len(m) > 1}, key=len, reverse=True)
    if not usable:
        return tokenize(text) if text else []
    pattern = re.compile("|".join(re.escape(m) for m in usable))
    return _avoid(text, pattern, tokenize)


def _avoid(text: str, pattern: re.Pattern[str], tokenize: Callable[[str], list[int]]) -> list[int]:
    ids: list[int] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            ids += tokenize(text[pos : match.start()])
        marker = match.group()
        half = len(marker) // 2
        ids += _avoid(marker[:half], pattern, tokenize) + _avoid(marker[half:], pattern, tokenize)
        pos = match.end()
    if pos < len(text):
        ids += tokenize(text[pos:])
    return ids


def _apply(tokenizer: Any, pairs: list[tuple[str, str]], continue_final_message: bool) -> str:
    return str(
        tokenizer.apply_chat_template(
            [{"role": r, "content": c} for r, c in pairs],
            tokenize=False,
            add_generation_prompt=not continue_final_message,
            continue_final_message=continue_final_message,
        )
    )


def _merge_system(pairs: list[tuple[str, str]], exc: Exception) -> list[tuple[str, str]]:
    """A template that failed (e.g. one without a system role) gets the system text merged into the next
    message; anything else is the engine's error."""
    if isinstance(exc, EngineError) and not isinstance(exc, EngineRejected):
        raise exc  # the server that renders it failed (down, a 404): not the template's fault, and not the client's
    if len(pairs) > 1 and pairs[0][0] == "system":
        return [(pairs[1][0], f"{pairs[0][1]}\n\n{pairs[1][1]}"), *pairs[2:]]
    upstream = isinstance(exc, EngineError)  # a server's refusal: its text is for the log, not the client
    raise EngineError(f"the model's chat template failed: {exc}",
                      public="the model's chat template failed" if upstream else None) from exc
