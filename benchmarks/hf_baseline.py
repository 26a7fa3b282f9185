"""The peer a user would otherwise pick: Skeleton-of-Thought the way its authors ran open models, with
Hugging Face transformers ``generate``: the skeleton as one request, then every point in ONE batched
``generate`` call with left padding and no prefix reuse (each point re-encodes the whole shared prompt).
Normal decoding is a batch-1 ``generate`` of the same total length. Same model shape, same GPU, same token
counts as ``benchmarks/gpu/engine_shapes.py``, random bf16 weights (``from_config``), greedy decoding,
``min_new_tokens == max_new_tokens`` so every answer has exactly the asked length.

Usage (GPU): python3 benchmarks/hf_baseline.py --model DIR_WITH_CONFIG_JSON --out $OUT/hf_7b.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

SYSTEM_TOKENS, QUESTION_TOKENS = 20, 20
SKELETON_INSTRUCTION_TOKENS, POINT_INSTRUCTION_TOKENS, POINT_PREFILL_TOKENS = 50, 40, 8
PAD_ID = 151643
DEVICE = "cuda"  # --device cpu only for a smoke test of this script


def load_model(model_dir: str, attn: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation=attn)
    model.eval()
    model.generation_config.pad_token_id = PAD_ID
    return model


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def generate(model, prompts: list[list[int]], n_new: int) -> tuple[float, list[list[int]]]:
    """One batched greedy ``generate`` with left padding; returns wall seconds and the new tokens."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(DEVICE), mask.to(DEVICE)
    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new, min_new_tokens=n_new,
                             do_sample=False, pad_token_id=PAD_ID)
    sync()
    dt = time.perf_counter() - t0
    return dt, out[:, width:].tolist()


class Prompts:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def ids(self, n: int) -> list[int]:
        return [self.rng.randrange(300, 30000) for _ in range(n)]


def normal_once(model, p: Prompts, ctx: int, n_tokens: int) -> float:
    prompt = p.ids(SYSTEM_TOKENS + ctx + QUESTION_TOKENS + 5)
    return generate(model, [prompt], n_tokens)[0]


def sot_once(model, p: Prompts, ctx: int, points: int, tpp: int, skel_tokens: int) -> dict:
    skel_prompt = p.ids(SYSTEM_TOKENS + ctx + QUESTION_TOKENS + SKELETON_INSTRUCTION_TOKENS)
    t_skel, skel = generate(model, [skel_prompt], skel_tokens)
    # point titles differ in length, hence the left padding
    prompts = [skel_prompt + skel[0] + p.ids(POINT_INSTRUCTION_TOKENS + POINT_PREFILL_TOKENS - 2 + i % 4)
               for i in range(points)]
    t_pts, outs = generate(model, prompts, tpp)
    assert all(len(o) == tpp for o in outs)
    return {"total_s": t_skel + t_pts, "skeleton_s": t_skel, "expansion_s": t_pts}


def decode_step_ms(model, p: Prompts, batch: int, ctx: int, n: int = 33) -> float:
    """(time for n new tokens - time for 1) / (n - 1): per-step cost of batched decoding."""
    prompts = [p.ids(ctx) for _ in range(batch)]
    t1 = generate(model, prompts, 1)[0]
    tn = generate(model, prompts, n)[0]
    return 1e3 * (tn - t1) / (n - 1)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--skel-per-point", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    import transformers

    global DEVICE
    DEVICE = a.device

    res: dict = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE, "torch": torch.__version__,
                 "transformers": transformers.__version__, "attn": a.attn, "model": a.model, "shapes": []}
    out = Path(a.out)
    t0 = time.perf_counter()
    model = load_model(a.model, a.attn)
    res["load_s"] = time.perf_counter() - t0
    p = Prompts(3)
    generate(model, [p.ids(64)], 8)  # warm-up
    res["steps"] = [{"batch": b, "context_tokens": 1500, "step_ms": decode_step_ms(model, p, b, 1500)}
                    for b in (1, 7, 8, 32)]
    for r in res["steps"]:
        print(f"[hf] step B={r['batch']:>2}: {r['step_ms']:.2f} ms", flush=True)
    out.write_text(json.dumps(res, indent=1))
    shapes = [(8, 50, 1500, 40), (7, 80, 1500, 7 * a.skel_per_point)]
    for n, tpp, ctx, skel in shapes:
        runs: list[dict[str, Any]] = []
        for _ in range(a.reps):
            runs.append({"normal_s": normal_once(model, p, ctx, n * tpp),
                         "sot": sot_once(model, p, ctx, n, tpp, skel)})
        row = {"points": n, "tokens_per_point": tpp, "context_tokens": ctx, "skeleton_tokens": skel,
               "normal_s": statistics.median(r["normal_s"] for r in runs),
               "sot_s": statistics.median(r["sot"]["total_s"] for r in runs),
               "sot_skeleton_s": statistics.median(r["sot"]["skeleton_s"] for r in runs),
               "sot_expansion_s": statistics.median(r["sot"]["expansion_s"] for r in runs), "runs": runs}
        row["speedup"] = row["normal_s"] / row["sot_s"]
        res["shapes"].append(row)
        out.write_text(json.dumps(res, indent=1))
        print(f"[hf] N={n} L={tpp} ctx={ctx}: normal {row['normal_s']*1e3:.0f} ms, SoT {row['sot_s']*1e3:.0f} ms "
              f"(skeleton {row['sot_skeleton_s']*1e3:.0f} + points {row['sot_expansion_s']*1e3:.0f}), "
              f"x{row['speedup']:.2f}", flush=True)
    res["total_s"] = time.perf_counter() - t0
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
