"""The replay processor's per-step CPU cost: ``apply`` while the GPU is busy (as it is when vLLM samples), how much
CPU time one call takes and whether any of its operations waits for the GPU (then its time is the GPU's backlog,
not its own); and ``update_state`` per added request.

One run compares, on the same device and the same logits, the processor as it is (``sotrag.app.engines.replay``)
with its previous version (``MainApply``, copied here: index_put_ of (row, target) pairs after a fill, tensor
views, device and dtype checks every call) and the first version (a fresh pinned tensor per call and a
Python-float index assignment, which waits for the GPU), at 1, 8 and 64 rows, with every row replayed and with
every other row replayed (``unmatched="pass"``); then each operation alone. Each call is timed on its own with
the GPU's queue loaded ahead of it, the versions in turns; medians. The ``small`` columns run the same calls on
CPU logits of ``SMALL_VOCAB`` columns: the Python and dispatch part of a call, the ops' own work about nil. Both
versions' logits are checked equal before timing. ``update_state`` is timed on skeleton, point and normal prompts
of the recorded test answers (``tests/data/real_answers.jsonl``), decoding prompt ends as before
(``tokenizer.decode``) and as now, with the tests' tiny tokenizer or ``--tokenizer``'s.

    python benchmarks/gpu/replay_step_cost.py [--out FILE] [--tokenizer MODEL_DIR]   # CUDA; FILE also under $OUT
    python benchmarks/gpu/replay_step_cost.py --cpu --out FILE    # CPU tensors: the ops' work is in the times
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from sotrag.app.engines.replay import ReplayLogitsProcessor, _Request

VOCAB, ROWS = 152064, (1, 8, 64)
SMALL_VOCAB = 1024  # logits this narrow on the CPU: the Python and dispatch part of a call, the ops' work ~nil
NO_PARAMS: Any = None  # update_state reads no sampling parameters of these requests


class MainApply:
    """The processor's ``apply`` before the cached views and the scatter path, verbatim (its state only)."""

    def __init__(self, requests: dict[int, _Request], pin: bool, stats_file: str | None) -> None:
        self.requests, self.pin, self.stats_file = requests, pin, stats_file
        self._host: list[Any] | None = None
        self._dev: Any = None
        self._zero: Any = None
        self._slot = 0
        self.stats = {"steps": 0, "rows": 0, "apply_s": 0.0, "update_s": 0.0, "added": 0, "unmatched": 0}

    def apply(self, logits: Any) -> Any:
        if not self.requests:
            return logits
        t0 = time.perf_counter()
        n = len(self.requests)
        if self._host is None or self._host[0].shape[1] < n or self._dev.device != logits.device:
            self._buffers(max(n, 256), logits.device)
        ring: list[Any] = self._host or []
        host = ring[self._slot]
        self._slot = (self._slot + 1) % len(ring)
        view = host.numpy()
        for k, (row, r) in enumerate(self.requests.items()):
            done = len(r.output)
            view[0, k] = row
            view[1, k] = r.ids[done] if done < len(r.ids) else r.eos
        index = self._dev[:, :n]
        index.copy_(host[:, :n], non_blocking=True)
        if n == logits.shape[0]:
            logits.fill_(float("-inf"))
        else:
            logits.index_fill_(0, index[0], float("-inf"))
        if self._zero is None or self._zero.dtype != logits.dtype or self._zero.device != logits.device:
            self._zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
        logits.index_put_((index[0], index[1]), self._zero)
        self.stats["steps"] += 1
        self.stats["rows"] += n
        self.stats["apply_s"] += time.perf_counter() - t0
        if self.stats_file and self.stats["steps"] % 50 == 0:
            Path(self.stats_file).write_text(str(self.stats))
        return logits

    def _buffers(self, size: int, device: Any) -> None:
        self._host = [torch.empty((2, size), dtype=torch.int64, pin_memory=self.pin) for _ in range(3)]
        self._dev = torch.empty((2, size), dtype=torch.int64, device=device)
        self._slot = 0


def first_version(requests: dict[int, _Request], logits: Any) -> Any:
    rows = list(requests)
    targets = [r.ids[len(r.output)] for r in requests.values()]
    index = torch.tensor([rows, targets], dtype=torch.int64, pin_memory=logits.is_cuda)
    index = index.to(logits.device, non_blocking=True)
    logits.fill_(float("-inf"))
    logits[index[0], index[1]] = 0.0
    return logits


def requests_for(batch: int, every: int) -> dict[int, _Request]:
    """Replayed requests on rows 0, every, 2*every, ... of a batch: scripts of 900 ids, outputs of varied lengths
    (some past their script: those get the end id)."""
    out = {}
    for row in range(0, batch, every):
        ids = tuple(2 + (7 * row + 11 * k) % 1000 for k in range(900))  # < SMALL_VOCAB
        out[row] = _Request(ids=ids, output=[0] * ((37 * row) % 1000), eos=2)
    return out


def new_processor(requests: dict[int, _Request], pin: bool, stats_file: str | None) -> ReplayLogitsProcessor:
    p = object.__new__(ReplayLogitsProcessor)
    p._init_state(pin, stats_file)
    p.requests = requests
    p._dense = max(requests) + 1 == len(requests)  # as update_state keeps it
    return p


def busy(a: Any) -> None:
    if a is not None:
        for _ in range(8):  # a few ms of GPU work queued ahead, as a forward pass is when sampling starts
            a @ a


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_turns(fns: list[Any], a: Any, device: str, reps: int) -> list[float]:
    """Median ms of each call, the functions in turns, each after the GPU's queue was loaded."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, out in zip(fns, times, strict=True):
            busy(a)
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
            sync(device)
    return [statistics.median(t) * 1e3 for t in times]


def machine(device: str) -> str:
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none (CPU tensors)"
    load = os.getloadavg()[0]
    return f"CPU {cpu}, {os.cpu_count()} cores (load average {load:.1f}); GPU {gpu}; torch {torch.__version__}"


def update_table(tokenizer_dir: str | None, emit: Any) -> None:
    """``update_state`` per added request (skeleton, point, normal prompts of the recorded questions with three
    passages), the prompt ends decoded by ``tokenizer.decode`` as before and as now (``_decode``)."""
    import json
    from types import SimpleNamespace

    from vllm.v1.sample.logits_processor import BatchUpdate

    import sotrag
    from sotrag.app.engines.replay import CONFIG_KEY
    from sotrag.prompts import build as prompts
    from sotrag.retrieval.types import Passage

    roots = (Path(sotrag.__file__).resolve().parent, Path.cwd(), Path(__file__).resolve().parents[2])
    root = next((r for r in roots if (r / "tests" / "data" / "real_answers.jsonl").is_file()), None)
    if root is None:  # a copy of benchmarks/ alone
        emit("update_state: skipped (no tests/data/real_answers.jsonl beside the sotrag package or here)")
        return
    work = Path(tempfile.mkdtemp())
    name = f"the tokenizer of {tokenizer_dir}"
    if tokenizer_dir is None:
        name = "the tests' tiny tokenizer"
        import sys

        sys.path.insert(0, str(root))
        from tests.tiny_model import build_tokenizer

        tokenizer_dir = str(work / "tokenizer")
        build_tokenizer().save_pretrained(tokenizer_dir)
    rows, seen = [], set()
    for line in (root / "tests" / "data" / "real_answers.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if row and row["question"] not in seen:  # one script a question: no replay tags needed
            seen.add(row["question"])
            rows.append(row)
    (work / "script.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SimpleNamespace(
        additional_config={CONFIG_KEY: {"script": str(work / "script.jsonl"), "unmatched": "pass"}},
        model_config=SimpleNamespace(tokenizer=tokenizer_dir, model=tokenizer_dir),
    )
    logging.getLogger("sotrag.engine.replay").setLevel(logging.ERROR)  # its load notice, twice
    now = ReplayLogitsProcessor(cfg, torch.device("cpu"), False)
    prev = ReplayLogitsProcessor(cfg, torch.device("cpu"), False)
    tok = prev.tokenizer
    prev._decode = lambda ids: str(tok.decode(ids, skip_special_tokens=False))  # type: ignore[method-assign]

    def ids(messages: list, cont: bool = False) -> list[int]:
        text = tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=not cont,
            continue_final_message=cont,
        )
        return list(tok.encode(text, add_special_tokens=False))

    passages = [Passage(text=r["normal"][:1500], source=f"doc{i}.md") for i, r in enumerate(rows[-3:])]
    requests: list[tuple[str, list[int]]] = []
    for r in rows[:30]:
        skeleton = prompts.skeleton_messages(r["question"], passages)
        requests.append(("skeleton", ids(skeleton)))
        for i, point in enumerate(r["points"][:6], 1):
            requests.append(("point", ids(prompts.point_messages(skeleton, r["skeleton"], i, point["title"]), True)))
        requests.append(("normal", ids(prompts.normal_messages(r["question"], passages))))
    times: dict[tuple[str, int], list[float]] = {}
    for rep in range(4):  # the first round warms up
        for version, p in enumerate((prev, now)):
            p._skeletons.clear()
            p._lengths.clear()
            for kind, prompt in requests:
                t0 = time.perf_counter()
                p.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, NO_PARAMS, prompt, [])], moved=[]))
                if rep:
                    times.setdefault((kind, version), []).append(time.perf_counter() - t0)
                if 0 not in p.requests:
                    raise SystemExit(f"a {kind} request matched no script")
                p.update_state(BatchUpdate(batch_size=0, removed=[0], added=[], moved=[]))
    tokens = statistics.mean(len(x) for _, x in requests)
    emit(
        f"update_state per added request ({name}, {tok.__class__.__name__}: prompts of "
        f"{tokens:.0f} tokens on average, short tail {now.short_tail} tokens)"
    )
    emit(f"{'request':<34} {'previous ms':>12} {'now ms':>8} {'now/prev':>8}")
    for kind in ("skeleton", "point", "normal"):
        a, b = (statistics.median(times[(kind, v)]) * 1e3 for v in (0, 1))
        emit(f"{kind:<34} {a:>12.4f} {b:>8.4f} {b / a:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="CPU tensors (no GPU needed; the ops' work is in the times)")
    ap.add_argument("--reps", type=int, default=0, help="calls per version and case (default 200 CUDA, 60 CPU)")
    ap.add_argument(
        "--tokenizer", help="a model dir whose tokenizer update_state decodes with (default: the tests' tiny one)"
    )
    ap.add_argument("--out", help="also write the table here (default: $OUT/replay_step_cost.txt where $OUT is set)")
    a = ap.parse_args()
    device = "cpu" if a.cpu else "cuda"
    reps = a.reps or (60 if a.cpu else 200)
    pin = device == "cuda"
    if device == "cpu":
        torch.set_num_threads(1)  # one thread: a parallel fill on a shared machine waits for its helper threads
    load = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16) if device == "cuda" else None
    stats_file = str(Path(tempfile.mkdtemp()) / "stats.json")  # as in the benchmark engine: timing on
    lines = [f"benchmarks/gpu/replay_step_cost.py on {machine(device)}; vocab {VOCAB}, median of {reps} calls"]
    if load is not None:
        sync(device)
        t0 = time.perf_counter()
        busy(load)
        sync(device)
        lines.append(f"GPU work queued ahead of each call: {(time.perf_counter() - t0) * 1e3:.2f} ms")
    else:
        lines.append("CPU tensors: each time includes executing the ops (a fill of rows x vocab floats), unlike a CUDA")
        lines.append("call, which only launches them.")

    def emit(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    for text in lines:
        print(text, flush=True)
    emit(f"apply, ms per call; small: the same calls on CPU logits of {SMALL_VOCAB} columns (Python and dispatch)")
    head = f"{'case':<34} {'rows':>4} {'previous ms':>12} {'now ms':>8} {'now/prev':>8}"
    emit(f"{head} {'small prev':>10} {'small now':>10}")
    for batch in ROWS:
        for every, case in ((1, "every row replayed"), (2, "every other row replayed")):
            if batch == 1 and every == 2:
                continue
            reqs = requests_for(batch, every)
            old, new = MainApply(reqs, pin, stats_file), new_processor(reqs, pin, stats_file)
            x, y = torch.randn(batch, VOCAB, device=device), None
            y = x.clone()
            if not torch.equal(old.apply(x), new.apply(y)):
                raise SystemExit(f"{case}, {batch} rows: the two versions' logits differ")
            mo, mn = MainApply(reqs, False, stats_file), new_processor(reqs, False, stats_file)
            sx, sy = torch.randn(batch, SMALL_VOCAB), torch.randn(batch, SMALL_VOCAB)
            t_small = timed_turns([partial(mo.apply, sx), partial(mn.apply, sy)], None, "cpu", reps)
            t = timed_turns([partial(old.apply, x), partial(new.apply, y)], load, device, reps)
            emit(
                f"{case:<34} {batch:>4} {t[0]:>12.4f} {t[1]:>8.4f} {t[1] / t[0]:>8.2f} "
                f"{t_small[0]:>10.4f} {t_small[1]:>10.4f}"
            )
    # the operations alone, on 8 rows
    x = torch.randn(8, VOCAB, device=device)
    reqs = requests_for(8, 1)
    idx2 = torch.zeros((2, 8), dtype=torch.int64, device=device)
    idx1 = torch.zeros((8, 1), dtype=torch.int64, device=device)
    host = torch.zeros((2, 8), dtype=torch.int64, pin_memory=pin)
    zero = torch.zeros((), device=device)
    ops = [
        ("first version (on CUDA, waits for the GPU)", lambda: first_version(reqs, x)),
        ("  .copy_(pinned, non_blocking)", lambda: idx2.copy_(host, non_blocking=True)),
        ("  logits.fill_(-inf)", lambda: x.fill_(float("-inf"))),
        ("  logits.index_fill_(0, rows, -inf)", lambda: x.index_fill_(0, idx2[0], float("-inf"))),
        ("  logits.index_put_ (device zero)", lambda: x.index_put_((idx2[0], idx2[1]), zero)),
        ("  logits.scatter_(1, (rows, 1), 0.0)", lambda: x.scatter_(1, idx1, 0.0)),
        ("  logits[i, j] = 0.0 (Python float)", lambda: x.__setitem__((idx2[0], idx2[1]), 0.0)),
    ]
    emit(f"{'operation alone, 8 rows':<42} {'ms':>8}")
    for (name, _), ms in zip(ops, timed_turns([fn for _, fn in ops], load, device, reps), strict=True):
        emit(f"{name:<42} {ms:>8.4f}")
    update_table(a.tokenizer, emit)
    out = a.out or (str(Path(os.environ["OUT"]) / "replay_step_cost.txt") if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text("\n".join(lines) + "\n")
        print(f"written to {out}")


if __name__ == "__main__":
    main()
