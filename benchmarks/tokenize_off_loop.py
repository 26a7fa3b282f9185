"""What an answer's first encode (its retrieved passages, counted and then reused by every prompt) costs the event
loop, in place against ``LocalTokenizer``'s worker thread (``off_loop_chars``).

    python benchmarks/tokenize_off_loop.py --tokenizer MODEL_DIR [--context-tokens 1500] [--answers 40]
        [--concurrency 1,4] [--out FILE]

MODEL_DIR is a Hugging Face tokenizer folder, e.g. the GPU benchmark's (``python benchmarks/gpu/make_model_dir.py
MODEL_DIR --shape 7b``). Each answer counts the tokens of a fresh system text with ``--context-tokens`` tokens of
passages (recorded real answers, ``tests/data/real_answers.jsonl``, made unique per answer so no cache helps),
as ``passages.fit`` does, ``--concurrency`` answers at a time. Meanwhile a ticker task sleeps 1 ms in a loop; the
gaps between its ticks, less the 1 ms, are how long the loop was held, i.e. how long every other answer's
stream would have waited. Rows: the call's latency and the ticker's gaps, per mode; the two modes run in turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # host.py

from host import machine

from sotrag.app.engines import chat_ids
from sotrag.app.engines.local_tokenizer import LocalTokenizer
from sotrag.prompts import build as prompts
from sotrag.retrieval.types import Passage

ROOT = Path(__file__).resolve().parent.parent


def contexts(tokenizer: Any, n: int, tokens: int) -> list[str]:
    """``n`` system texts of about ``tokens`` tokens of passages each, every one unique."""
    rows = [json.loads(x) for x in (ROOT / "tests/data/real_answers.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for i in range(n):
        passages = []
        for k in range(5):
            row = rows[(i * 5 + k) % len(rows)]
            ids = chat_ids.encode_plain(tokenizer, row["normal"])[: tokens // 5]
            passages.append(Passage(text=f"({i}.{k}) " + tokenizer.decode(ids), source=f"d{k}.md", score=1.0))
        out.append(prompts.system_message(passages).content)
    return out


async def run(local: LocalTokenizer, texts: list[str], concurrency: int) -> dict[str, Any]:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last) * 1e3 - 1.0)
            last = now

    latencies: list[float] = []

    async def one(text: str) -> None:
        t = time.perf_counter()
        await local.acount_tokens(text)
        latencies.append((time.perf_counter() - t) * 1e3)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    for start in range(0, len(texts), concurrency):
        await asyncio.gather(*(one(t) for t in texts[start : start + concurrency]))
        await asyncio.sleep(0.005)
    stop.set()
    await tick
    gaps.sort()
    return {
        "latency_ms_p50": round(statistics.median(latencies), 3),
        "loop_held_ms_p99": round(gaps[int(len(gaps) * 0.99)], 3),
        "loop_held_ms_max": round(gaps[-1], 3),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows: dict[str, Any] = {}
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        for rnd in range(args.rounds):
            for mode, chars in (("in place", 0), ("worker", 2000)):
                texts = contexts(tokenizer, args.answers, args.context_tokens)
                texts = [f"[{mode} {rnd} {concurrency}] {t}" for t in texts]
                local = LocalTokenizer(tokenizer, off_loop_chars=chars)
                if local.worker is not None:
                    await local.worker.encode("warm up")
                try:
                    row = await run(local, texts, concurrency)
                finally:
                    local.close()
                rows.setdefault(f"{mode}, {concurrency} at a time", []).append(row)
                print(f"{mode:8s} x{concurrency} round {rnd}: {row}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--context-tokens", type=int, default=1500)
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    result = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "notes": __doc__.split("\n\n")[2].replace("\n", " "),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
