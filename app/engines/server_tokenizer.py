"""Prompt ids through a vLLM server's ``/tokenize`` when no local copy of its tokenizer is usable.

Used by ``RemoteTokens`` (``remote_tokens``); see ``ServerTokenizer`` for how content is kept free of special tokens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import EngineError
from sotrag.app.engines.lru import LRU

log = logging.getLogger("sotrag.engine.remote")

CACHE_MAX = 2048  # entries of each text -> ids cache


class ServerTokenizer:
    """Prompt pieces encoded through a vLLM server's ``/tokenize``, content kept free of special tokens.

    ``/tokenize`` always turns special-token strings into special tokens (it has no ``split_special_tokens``),
    so content is encoded by ``chat_ids.encode_avoiding``: cut at every known special-token string, each
    occurrence encoded in two halves. The special-token strings are learnt from the server:

    - every added token of ``/tokenizer_info`` when the server shares it (``--enable-tokenizer-info-endpoint``):
      then the list is complete;
    - every id the chat template writes (its pieces between contents, checked again for each new piece), and
      the ids next to a special one while they are special too (special tokens sit in one run of ids: Qwen's
      ``<|endoftext|>`` beside the ``<|im_start|>`` the template writes).

    An id counts as special when its text, written four times in different surroundings, comes back as
    that id four times: text that is split out before the vocabulary is applied. A plain vocabulary token
    can pass this too; its string is then only split needlessly in content (still plain text).

    The gap without ``/tokenizer_info``: a special token that the template never writes and that lies
    outside the run of ids around the template's own is not known, so content holding its string gets it
    as a special token; so does a one-character special token, which cannot be split. As a last check no
    known special id may come out of content (``EngineError`` otherwise).
    """

    NEIGHBOURS = 512  # at most this many ids walked each way from a known special id

    def __init__(self, call: Callable[[str, dict[str, Any]], dict[str, Any]], model: Callable[[], str | None]):
        self._call = call
        self._model = model
        self.markers: set[str] = set()
        self.special_ids: set[int] = set()
        self._classified: dict[int, bool] = {}
        self._tokens = LRU(CACHE_MAX)  # text -> ids, special strings parsed
        self._plain = LRU(CACHE_MAX)  # text -> plain ids

    def tokenize(self, text: str) -> list[int]:
        """``text`` as the server encodes a prompt: special-token strings become special tokens."""
        cached = self._tokens.get_fresh(text)
        if cached is None:
            body = {"model": self._model(), "prompt": text, "add_special_tokens": False}
            cached = tuple(self._call("/tokenize", body)["tokens"])
            self._tokens.put(text, cached)
        return list(cached)

    def template_ids(self, piece: str) -> list[int]:
        """A piece of the chat template (trusted): encoded with special tokens, which are learnt from it."""
        ids = self.tokenize(piece)
        for token in ids:
            self._learn_id(token)
        return ids

    def plain_ids(self, text: str) -> list[int]:
        """``text`` as plain text: no known special token can come out of it."""
        cached = self._plain.get_fresh(text)
        if cached is not None:
            return list(cached)
        ids = chat_ids.encode_avoiding(text, sorted(self.markers), self.tokenize)
        leaked = self.special_ids.intersection(ids)
        if leaked:
            raise EngineError(f"content would encode to special token ids {sorted(leaked)} on the vLLM server")
        self._plain.put(text, tuple(ids))
        return ids

    def learn(self, info: dict[str, Any] | None, templates: Callable[[], list[str]]) -> list[str]:
        """Learn the special-token strings (see the class doc); returns them, sorted."""
        if info:
            self._learn_info(info)
        for rendered in templates():
            for piece in re.split(r"<<sotrag-[0-9a-f]+-\w+>>", rendered):
                if piece:
                    self.template_ids(piece)
        return sorted(self.markers)

    def _learn_info(self, info: dict[str, Any]) -> None:
        added = info.get("added_tokens_decoder") or {}
        for key, token in added.items() if isinstance(added, dict) else ():
            content = token.get("content") if isinstance(token, dict) else token
            if isinstance(content, str) and content:
                self._add(int(key), content)
        named = [info.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token")]
        extra = [info.get("additional_special_tokens"), info.get("extra_special_tokens")]  # names by version
        listed = [t for group in extra for t in (group.values() if isinstance(group, dict) else group or [])]
        for token in [*named, *listed]:
            content = token.get("content") if isinstance(token, dict) else token
            if isinstance(content, str) and content:
                ids = self.tokenize(content)
                if len(ids) == 1:
                    self._add(ids[0], content)

    def _add(self, token: int, text: str) -> None:
        self._classified[token] = True
        if len(text) > 1:
            self.markers.add(text)
            self.special_ids.add(token)
        elif token not in self.special_ids:
            log.warning("special token %r has one character: content holding it cannot be kept plain", text)

    def _learn_id(self, token: int) -> None:
        if token in self._classified:
            return
        if not self._is_special(token):
            return
        for step in (1, -1):  # the run of special ids around it
            other = token + step
            for _ in range(self.NEIGHBOURS):
                if other < 0 or other in self._classified or not self._is_special(other):
                    break
                other += step

    def _is_special(self, token: int) -> bool:
        known = self._classified.get(token)
        if known is not None:
            return known
        special = False
        try:
            text = str(self._call("/detokenize", {"model": self._model(), "tokens": [token]})["prompt"])
        except EngineError:  # past the vocabulary
            text = ""
        if len(text) > 1:  # one character is its own token in any context: no test, and no way to split it
            probe = f"a{text}a\n{text}\n {text} 0{text}0"
            special = self.tokenize(probe).count(token) == 4
        self._classified[token] = special
        if special:
            self._add(token, text)
        return special
