"""Turn the raw GPU results (benchmarks/results/gpu_*.json) into the issue's outputs: the table-1 rows as
``gpu_single_user.json``, the PNG plots, and the markdown tables of every machine start in the benchmark log,
docs/archive/benchmarks-history.md (written between its ``<!-- gpu-speed:... -->`` and ``<!-- gpu-tables:... -->``
markers, so no number there is typed by hand; docs/BENCHMARKS.md, the current results, copies from them).

Usage: python benchmarks/gpu/report.py [--results benchmarks/results] [--doc docs/archive/benchmarks-history.md]
(plots need matplotlib; without it the tables and JSON are still written)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

START, END = "<!-- gpu-tables:start -->", "<!-- gpu-tables:end -->"
SPEED_START, SPEED_END = "<!-- gpu-speed:start -->", "<!-- gpu-speed:end -->"
SHAPE_7B = "Qwen2.5-7B-Instruct (config.json shape, dummy weights)"
SHAPE_15B = "Qwen2.5-1.5B-Instruct (config.json shape, dummy weights)"
SUPERSEDED = ("superseded by issue 13: guided skeleton, a 37,483-id sampling set costing ~50 ms per request, "
              "Poisson rates seeded with int(rate*100)")
# issue 13 runs: one file per machine start, named gpu_speed_7b_<machine>.json
SPEED_MACHINES = ("a", "b", "c", "d", "e", "f", "g", "h", "j", "k", "l", "m", "n", "o")
# the 1.5B shape's table 4, one file per machine start: gpu_speed_1.5b_<machine>.json
SPEED_MACHINES_15B = ("d", "g", "h", "i", "i2", "k", "l", "m", "n")
# machine starts with today's pipeline: the only ones in the latency-vs-load plot
PLOT_MACHINES = ("m", "n")
# what the pipeline did differently on each machine start (the later runs add to the earlier ones)
SPEED_CODE = {
    "a": "points re-encode the skeleton text",
    "b": "points re-encode the skeleton text",
    "c": "points continue the skeleton's token ids",
    "d": "token ids + content cache",
    "e": "token ids + content cache",
    "f": "token ids + content cache; benchmark lines of ~3 words",
    "g": "token ids + content cache; benchmark lines of ~3 words",
    "h": "as G, plus the event-loop lag in the load policy",
    "i": "as H; each row's clock starts after the lag window (no context building in it); auto-nolag: the same "
         "router without the loop-lag signal",
    "i2": "machine I again, a second engine start on it, arrival seed 1",
    "j": "as I (before the points' hand-over fix); headline with vLLM's per-request timestamps (--trace)",
    "k": "as I, plus the points' hand-over fix: every point request built first, all sent in one loop turn",
    "l": "as K (a second machine start)",
    "m": "as K, plus the passages tokenized once per answer and the startup heap frozen (gc.freeze)",
    "n": "as M (a second machine start)",
    "o": "as M (a third machine start); headline only, with vLLM's per-request timestamps (--trace)",
}
# engine-limit sweeps: (file, machine, what each setting ran)
SWEEPS = (("speed_7b_d_sweep", "D", "headline 2 reps, then 24 Poisson arrivals at 16/s per mode"),
          ("speed_7b_m_sweep", "M", "headline 2 reps, then 96 Poisson arrivals at 32/s per mode (a saturating rate)"))


def host_text(r: dict) -> str:
    h = r.get("host") or {}
    return f"{h.get('cpu_model', '?')}, {h.get('cores', '?')} cores"


def speed_runs(d: Path) -> list[tuple[str, dict]]:
    return [(m.upper(), r) for m in SPEED_MACHINES if (r := load(d, f"speed_7b_{m}"))]


def paired_overhead(h: dict, mode: str = "sot") -> float:
    """Median over reps of pipeline / engine-direct - 1, each rep against the direct run of its own lengths
    (the dummy model's skeleton length moves both by as much as 2x between reps)."""
    return statistics.median(r[mode]["wall_s"] / r["direct"][mode]["total_s"] - 1 for r in h["runs"])


def load_rows(d: Path) -> list[dict]:
    """Table 4 of issue 13 as gpu_load.json rows (modes sot, normal, auto; eager rows stay in the doc)."""
    rows = []
    runs = [(m, r, SHAPE_7B) for m, r in speed_runs(d)]
    runs += [(m.upper(), r15, SHAPE_15B) for m in SPEED_MACHINES_15B if (r15 := load(d, f"speed_1.5b_{m}"))]
    for machine, r, shape in runs:
        for t in r.get("table4", []):
            if t["mode"] not in ("sot", "normal", "auto"):
                continue
            rows.append({"gpu": r["gpu"], "model_shape": shape, "machine": machine, "host_cpu": host_text(r),
                         "rate": t["rate"], "offered_rate": round(t["offered_rate"], 3), "mode": t["mode"],
                         "answers": t["arrivals"], "p50_s": round(t["p50_s"], 3), "p99_s": round(t["p99_s"], 3),
                         "output_tok_s": round(t["output_tokens_per_s"], 1),
                         "loop_lag_ms_p50": t.get("loop_lag_ms_p50")})
    return rows


def speed_single_user_rows(d: Path) -> list[dict]:
    rows = []
    for machine, r in speed_runs(d):
        h = r.get("headline")
        if not h:
            continue
        rows.append({"gpu": r["gpu"], "model_shape": SHAPE_7B, "points": 7, "tokens_per_point": 80,
                     "context_tokens": 1500, "prefix_caching": True, "normal_s": round(h["normal_s"], 4),
                     "sot_s": round(h["sot_s"], 4), "speedup": round(h["speedup"], 3),
                     "ideal_speedup": round(h["ideal_speedup"], 3) if h.get("ideal_speedup") else None,
                     "skeleton_tokens": h["skeleton_tokens"], "vllm": r["vllm"],
                     "source": f"pipeline, headline (median of {h['reps']}), machine {machine} ({host_text(r)}), "
                               f"issue 13: unguided skeleton, {SPEED_CODE[machine.lower()]}"})
    return rows


def speed_tables(d: Path) -> str:
    runs = speed_runs(d)
    if not runs:
        return ""
    parts = []
    rows = []
    for machine, r in runs:
        h = r.get("headline")
        if not h:
            continue
        words = statistics.median(x["sot"]["skeleton_words_per_point"] for x in h["runs"])
        eager = (f"{ms(h['sot_eager_s'])} ({h['eager_speedup']:.2f}x)" if h.get("sot_eager_s") else "not run")
        rows.append([machine, SPEED_CODE[machine.lower()], host_text(r), ms(h["normal_s"]), ms(h["sot_s"]),
                     f"**{h['speedup']:.2f}x**", eager,
                     ms(h["direct_normal_s"]), ms(h["direct_sot_s"]), f"{h['direct_speedup']:.2f}x",
                     f"{100 * paired_overhead(h):+.1f}% / {100 * paired_overhead(h, 'normal'):+.1f}%",
                     f"{h['skeleton_tokens']:.0f} ({words:.1f})", f"{h['ideal_speedup']:.2f}x",
                     " / ".join(str(x["sot"]["skeleton_tokens"]) for x in h["runs"])])
    parts.append("### Headline (issue 13): 7 points x 80 tokens, 1500 context, medians of 5, modes interleaved\n\n"
                 + table(["machine", "pipeline", "host CPU", "normal ms", "SoT ms", "speed-up", "eager SoT ms",
                          "engine-direct normal ms", "engine-direct SoT ms", "engine-direct speed-up",
                          "pipeline overhead SoT / normal (paired median)", "skeleton tokens (words a point), median",
                          "ideal bound", "skeleton tokens of each rep"], rows))
    rows = []
    for machine, r in runs:
        for key, label in (("headline", "content cache (the default)"),
                           ("headline_no_content_cache", "no content cache (every content encoded afresh)")):
            h = r.get(key)
            if not h or not h.get("runs") or "headline_no_content_cache" not in r:
                continue
            rows.append([machine, label, ms(h["normal_s"]), ms(h["sot_s"]), f"{h['speedup']:.2f}x",
                         ms(h["direct_sot_s"]), f"{100 * paired_overhead(h):+.1f}%",
                         " / ".join(f"{100 * (x['sot']['wall_s'] / x['direct']['sot']['total_s'] - 1):+.0f}%"
                                    for x in h["runs"]),
                         " / ".join(str(x["sot"]["skeleton_tokens"]) for x in h["runs"])])
    if rows:
        parts.append("### The content cache, A/B in one engine start: 7 x 80 tokens, 1500 context, 5 reps each\n\n"
                     + table(["machine", "VLLMEngine encodes contents with", "normal ms", "SoT ms", "speed-up",
                              "engine-direct SoT ms", "SoT pipeline overhead (paired median)",
                              "overhead of each rep", "skeleton tokens of each rep"], rows))
    for name, machine, what in SWEEPS:
        sweep = load(d, name)
        if not sweep or not sweep.get("sweep"):
            continue
        rows = []
        rate = "?"
        for row in sweep["sweep"]:
            h = row["headline"]
            t4 = {t["mode"]: t for t in row.get("table4", [])}
            rate = next((f"{t['rate']:g}/s" for t in t4.values()), rate)
            cells = [f"{row['max_num_seqs']} / {row['max_num_batched_tokens']}", ms(h["sot_s"]), ms(h["normal_s"]),
                     f"{h['speedup']:.2f}x"]
            for mode in ("normal", "sot", "auto"):
                t = t4.get(mode)
                cells.append(f"{t['p50_s']:.2f} s, {t['output_tokens_per_s']:.0f} tok/s, offered "
                             f"{t['offered_rate']:.1f}/s, waiting max {t['waiting_max']}" if t else "not run")
            rows.append(cells)
        parts.append(f"### Engine limits sweep (machine {machine}, a fresh engine per setting): {what}\n\n"
                     + table(["max_num_seqs / max_num_batched_tokens", "SoT ms", "normal ms", "speed-up",
                              f"normal at {rate}", f"SoT at {rate}", f"auto at {rate}"], rows))
    rows = []
    steps15 = []
    for m in SPEED_MACHINES_15B:
        r15 = load(d, f"speed_1.5b_{m}")
        if not r15 or not r15.get("table4"):
            continue
        rows += [[m.upper(), SPEED_CODE[m], f"{t['rate']:g}", f"{t['offered_rate']:.2f}", t["mode"], t["arrivals"],
                  f"{t['p50_s']:.2f}", f"{t['p99_s']:.2f}", f"{t['output_tokens_per_s']:.0f}", f"{t['sot_share']:.2f}",
                  f"{t['itl_ratio_p50']:.2f} / {t['itl_ratio_max']:.2f}", t["waiting_max"], lag_text(t)]
                 for t in r15["table4"]]
        steps15.append(f"{m.upper()}: " + " ".join(f"B{x['batch']}={x['step_ms']:.2f}" for x in r15.get("steps", [])))
    if rows:
        parts.append("### Table 4 on the 1.5B shape (each machine's rows from its own engine start; 24 Poisson "
                     "arrivals per row, 96 at 32/s and 160 at 64/s; decode step ms by batch, "
                     + "; ".join(steps15) + ")\n\n"
                     + table(["machine", "pipeline", "rate asked /s", "offered /s", "mode", "answers", "p50 s", "p99 s",
                              "output tokens/s", "share by SoT", "ITL ratio p50 / max", "waiting max",
                              "loop lag p50 / max ms"], rows))
    rows = []
    for machine, r in runs:
        for t in r.get("table4", []):
            rows.append([machine, f"{t['rate']:g}", f"{t['offered_rate']:.2f}", t["mode"], t["arrivals"],
                         f"{t['p50_s']:.2f}", f"{t['p99_s']:.2f}", f"{t['first_visible_p50_s']:.2f}",
                         f"{t['output_tokens_per_s']:.0f}", f"{t['sot_share']:.2f}",
                         f"{t['itl_ratio_p50']:.2f} / {t['itl_ratio_max']:.2f}", t["waiting_max"],
                         f"{t['running_p50']:.0f}", lag_text(t)])
    parts.append("### Table 4 (issue 13): Poisson arrivals, 7 x 80 tokens, 1500 context; each machine's rows from "
                 "one engine start, modes run back to back on the same arrivals\n\n"
                 + table(["machine", "rate asked /s", "offered /s (measured)", "mode", "answers", "p50 s", "p99 s",
                          "first visible p50 s", "output tokens/s", "share by SoT",
                          "ITL ratio at arrival p50 / max", "waiting max", "running p50",
                          "loop lag at arrival p50 / max ms"], rows))
    return "\n\n".join(parts)


def lag_text(t: dict) -> str:
    """The benchmark process's event-loop lag at the answers' arrivals (recorded from machine H on)."""
    if t.get("loop_lag_ms_p50") is None:
        return "not recorded"
    return f"{t['loop_lag_ms_p50']:.1f} / {t['loop_lag_ms_max']:.0f}"


def load(d: Path, name: str) -> dict[str, Any] | None:
    p = d / f"gpu_{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(q * len(xs)) - 1)]


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.0f}"


def table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def single_user_rows(a: dict, b: dict | None, model_shape: str) -> list[dict]:
    rows = []
    for r in a.get("table1", []):
        n, s = r["normal"], r["sot"]
        rows.append({"gpu": a["gpu"], "model_shape": model_shape, "points": s["points"],
                     "tokens_per_point": s["tokens_per_point"], "context_tokens": s["context_tokens"],
                     "prefix_caching": True, "normal_s": round(n["wall_s"], 4), "sot_s": round(s["wall_s"], 4),
                     "speedup": round(r["speedup"], 3), "ideal_speedup": round(r["ideal_speedup"], 3),
                     "skeleton_tokens": s["skeleton_tokens"], "vllm": a["vllm"],
                     "source": f"pipeline, table1 [{SUPERSEDED}]"})
    for key, src, caching in (("headline", a, True), ("nocache", b, False)):
        h = (src or {}).get(key)
        if h and src:
            rows.append({"gpu": src["gpu"], "model_shape": model_shape, "points": 7, "tokens_per_point": 80,
                         "context_tokens": 1500, "prefix_caching": caching, "normal_s": round(h["normal_s"], 4),
                         "sot_s": round(h["sot_s"], 4), "speedup": round(h["speedup"], 3),
                         "ideal_speedup": round(h["ideal_speedup"], 3) if h.get("ideal_speedup") else None,
                         "skeleton_tokens": h["skeleton_tokens"], "vllm": src["vllm"],
                         "source": f"pipeline, {key} (median of {h['reps']}) [{SUPERSEDED}]"})
    return rows


def md_tables(d: Path) -> tuple[str, dict]:
    e7, e15, fp8, hf = (load(d, n) for n in ("engine_7b", "engine_1.5b", "engine_7b_fp8", "hf_7b"))
    a, b, eg = (load(d, n) for n in ("pipeline_7b_a", "pipeline_7b_b", "pipeline_7b_eager"))
    parts: list[str] = []
    facts: dict[str, Any] = {}
    parts.append(f"**Superseded** (issue 6, 2026-11-21; {SUPERSEDED}). Kept for the record; the issue-13 "
                 "tables above replace the headline and table 4; table 1 was not re-run.")
    if a:
        parts.append(f"Machine: **{a['gpu']}**, vLLM **{a['vllm']}**, torch {a['torch']}; model: Qwen2.5-7B-Instruct "
                     f"shape, bf16, dummy weights; prefix caching on unless said; max_num_seqs 64.")
    # headline
    if a and "headline" in a:
        h = a["headline"]
        rows = [["pipeline (`SoTPipeline` on `VLLMEngine`)", ms(h["normal_s"]), ms(h["sot_s"]), f"{h['speedup']:.2f}x",
                 ms(h["normal_first_visible_s"]), ms(h["sot_first_visible_s"]), ms(h["sot_first_answer_token_s"])],
                ["same shapes straight through the same AsyncLLM", ms(h["direct_normal_s"]), ms(h["direct_sot_s"]),
                 f"{h['direct_speedup']:.2f}x", "", "", ""]]
        if eg and "headline" in eg:
            he = eg["headline"]
            rows.append(["pipeline, `sot.eager=true` (separate engine start)", ms(he["normal_s"]), ms(he["sot_s"]),
                         f"{he['speedup']:.2f}x", ms(he["normal_first_visible_s"]), ms(he["sot_first_visible_s"]),
                         ms(he["sot_first_answer_token_s"])])
            facts["eager_speedup"] = he["speedup"]
        parts.append("### Headline: 7 points x 80 tokens, 1500 context tokens (median of "
                     f"{h['reps']} answers each, alternating modes)\n\n" + table(
                         ["driven by", "normal ms", "SoT ms", "speed-up", "normal first visible ms",
                          "SoT first visible (skeleton) ms", "SoT first answer-point token ms"], rows)
                     + f"\n\nSkeleton: {h['skeleton_tokens']:.0f} tokens (median) in {ms(h['sot_skeleton_s'])} ms, "
                     f"expansion {ms(h['sot_expansion_s'])} ms. Ideal bound (decode steps only, measured step costs): "
                     f"{h['ideal_speedup']:.2f}x. Pipeline overhead over the engine-direct run: SoT "
                     f"{100 * h['sot_overhead']:+.1f}%, normal {100 * h['normal_overhead']:+.1f}%.")
        facts.update(headline_speedup=h["speedup"], overhead=h["sot_overhead"], direct_speedup=h["direct_speedup"])
    # table 1
    if a and a.get("table1"):
        rows = []
        for r in a["table1"]:
            s = r["sot"]
            rows.append([s["points"], s["tokens_per_point"], s["context_tokens"], s["skeleton_tokens"],
                         ms(r["normal"]["wall_s"]), ms(s["wall_s"]), f"{r['speedup']:.2f}x",
                         f"{r['ideal_speedup']:.2f}x",
                         ms(r["normal"]["first_visible_s"]), ms(s["first_answer_token_s"])])
        parts.append("### Table 1: single user, SoT vs normal through the pipeline (one answer per cell)\n\n" + table(
            ["points", "tokens/point", "context", "skeleton tokens", "normal ms", "SoT ms", "speed-up", "ideal",
             "normal TTFT ms", "SoT first point token ms"], rows))
    # table 2
    if a and a.get("table2"):
        sp = [r["speedup"] for r in a["table2"]]
        n_s = [r["normal"]["wall_s"] for r in a["table2"]]
        s_s = [r["sot"]["wall_s"] for r in a["table2"]]
        sk = [r["sot"]["skeleton_tokens"] for r in a["table2"]]
        parts.append("### Table 2: Vicuna-80 questions, 7 points x 80 tokens, no retrieval context\n\n" + table(
            ["questions", "mean speed-up", "p10", "median", "p90", "normal mean ms", "SoT mean ms",
             "skeleton tokens mean"],
            [[len(sp), f"{statistics.fmean(sp):.2f}x", f"{pct(sp, 0.1):.2f}x", f"{statistics.median(sp):.2f}x",
              f"{pct(sp, 0.9):.2f}x", ms(statistics.fmean(n_s)), ms(statistics.fmean(s_s)),
              f"{statistics.fmean(sk):.0f}"]]))
        facts["t2_mean"], facts["t2_p90"] = statistics.fmean(sp), pct(sp, 0.9)
    # table 3
    rows = []
    for src, label in ((e7, "engine only, 7B"), (e15, "engine only, 1.5B"), (fp8, "engine only, 7B fp8")):
        for key in ("target", "headline"):
            for r in (src or {}).get(key, []):
                rows.append([label, f"{r['points']} x {r['tokens_per_point']} (skeleton {r['skeleton_tokens']})",
                             "on" if r["prefix_caching"] else "off (per-request cache_salt)", ms(r["normal_s"]),
                             ms(r["sot_s"]), ms(r["sot_expansion_s"]), f"{r['speedup']:.2f}x",
                             ms(r["normal_ttft_s"]), ms(r["sot_ttft_answer_s"])])
    for src, key, caching in ((a, "headline", "on"), (b, "nocache", "off (engine started without it)")):
        h = (src or {}).get(key)
        if h and src:
            rows.append(["pipeline, 7B", f"7 x 80 (skeleton {h['skeleton_tokens']:.0f})", caching, ms(h["normal_s"]),
                         ms(h["sot_s"]), ms(h["sot_expansion_s"]), f"{h['speedup']:.2f}x",
                         ms(h["normal_first_visible_s"]), ms(h["sot_first_answer_token_s"])])
    if rows:
        parts.append("### Table 3: prefix caching on vs off for the expansion stage (1500 context tokens; medians of "
                     "3-5)\n\n" + table(["driven by", "shape", "prefix caching", "normal ms", "SoT ms",
                                          "SoT expansion ms", "speed-up", "normal TTFT ms",
                                          "SoT first point token ms"], rows))
    # table 4
    dl, au = load(d, "pipeline_7b_direct_load"), load(d, "pipeline_7b_auto")
    load_rows = [*((b or {}).get("table4", [])), *({**r, "mode": "sot, eager"} for r in (eg or {}).get("table4", [])),
                 *((dl or {}).get("table4direct", [])), *((au or {}).get("table4", []))]
    if load_rows:
        rows = [[r["rate"], r["mode"], r["arrivals"], f"{r['p50_s']:.2f}", f"{r['p99_s']:.2f}",
                 f"{r['first_visible_p50_s']:.2f}", f"{r['output_tokens_per_s']:.0f}",
                 f"{r['sot_share']:.2f}" if "sot_share" in r else ("1.00" if "sot" in r["mode"] else "0.00")]
                for r in sorted(load_rows, key=lambda r: (r["rate"], r["mode"]))]
        parts.append("### Table 4: Poisson arrivals, 7 x 80 tokens, 1500 context (\"auto\": the trained SoT-R router "
                     "+ load policy; \"engine direct\": the same request shapes on token ids, no template, regex or "
                     "parser; each group of rows from its own engine start)\n\n"
                     + table(["answers/s", "mode", "answers", "p50 s", "p99 s", "first visible p50 s",
                                               "output tokens/s", "share answered by SoT"], rows))
    # table 5
    steps: dict[str, dict[int, float]] = {}
    # (HF's step times were taken right after a short warm-up and are not steady: its first long generate
    # ran 2-3x slower than its second; see table 6. They stay in gpu_hf_7b.json only.)
    for src, label in ((e7, "vLLM 7B bf16"), (fp8, "vLLM 7B fp8 (w8a8 + fp8 KV)"), (e15, "vLLM 1.5B bf16")):
        if src and src.get("steps"):
            steps[label] = {r["batch"]: r["step_ms"] for r in src["steps"]}
    if steps:
        batches = sorted({b for v in steps.values() for b in v})
        parts.append("### Table 5: decode step time (ms) by batch size, 1500-token context\n\n" + table(
            ["engine", *[f"B={b}" for b in batches]],
            [[k, *(f"{v[b]:.2f}" if b in v else "" for b in batches)] for k, v in steps.items()]))
    # table 6
    if hf and e7:
        rows = []
        for r in hf["shapes"]:
            eng = next((x for key in ("target", "headline") for x in e7.get(key, [])
                        if x["points"] == r["points"] and x["tokens_per_point"] == r["tokens_per_point"]
                        and x["prefix_caching"]), None)
            # best of the runs: HF's first long generate of a shape ran 2-3x slower than the next (warm-up)
            hn = min(x["normal_s"] for x in r["runs"])
            hs = min(x["sot"]["total_s"] for x in r["runs"])
            rows.append([f"{r['points']} x {r['tokens_per_point']} (skeleton {r['skeleton_tokens']})",
                         " / ".join(ms(x["normal_s"]) for x in r["runs"]),
                         " / ".join(ms(x["sot"]["total_s"]) for x in r["runs"]), f"{hn / hs:.2f}x",
                         ms(eng["normal_s"]) if eng else "", ms(eng["sot_s"]) if eng else "",
                         f"{hs / eng['sot_s']:.1f}x" if eng else ""])
        parts.append("### Table 6: the peer: SoT with HF transformers `generate` (batched points, left padding, no "
                     "prefix reuse) vs vLLM, same shape, same GPU\n\n" + table(
                         ["shape (1500 context)", "HF normal ms (run 1 / run 2)", "HF SoT ms (run 1 / run 2)",
                          "HF speed-up (best runs)", "vLLM normal ms", "vLLM SoT ms", "HF SoT (best) / vLLM SoT"],
                         rows))
    # table 7
    if fp8 and e7:
        rows = []
        for src, label in ((e7, "bf16"), (fp8, "fp8 weights + fp8 KV cache")):
            h = next(r for r in src["headline"] if r["prefix_caching"])
            st = {r["batch"]: r["step_ms"] for r in src["steps"]}
            rows.append([label, f"{st[1]:.2f}", f"{st[8]:.2f}", f"{st[64]:.2f}", ms(h["normal_s"]), ms(h["sot_s"]),
                         f"{h['speedup']:.2f}x"])
        parts.append("### Table 7: fp8 on Hopper, engine only, 7 x 80 at 1500 context\n\n" + table(
            ["weights", "step B=1 ms", "step B=8 ms", "step B=64 ms", "normal ms", "SoT ms", "speed-up"], rows))
    return "\n\n".join(parts), facts


def plots(d: Path, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    a = load(d, "pipeline_7b_a")
    if a and a.get("table1"):
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
        for ax, ctx in zip(axes, (0, 1500, 4000), strict=True):
            for tpp, color in zip((40, 80, 120), ("C0", "C1", "C2"), strict=True):
                rs = sorted((r for r in a["table1"] if r["sot"]["context_tokens"] == ctx
                             and r["sot"]["tokens_per_point"] == tpp), key=lambda r: r["sot"]["points"])
                xs = [r["sot"]["points"] for r in rs]
                ax.plot(xs, [r["speedup"] for r in rs], "o-", color=color, label=f"{tpp} tok/point")
                ax.plot(xs, [r["ideal_speedup"] for r in rs], "--", color=color, alpha=0.5)
            ax.set_title(f"context {ctx} tokens")
            ax.set_xlabel("points")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("speed-up (normal / SoT latency)")
        axes[0].legend(title="measured (solid), ideal (dashed)", fontsize=8)
        fig.suptitle(f"sotrag SoT vs normal through the pipeline, {a['gpu']}, 7B shape, vLLM {a['vllm']}")
        fig.tight_layout()
        fig.savefig(out / "gpu_speedup_vs_points.png", dpi=110)
        made.append("gpu_speedup_vs_points.png")
    runs = [(m, r) for m, r in speed_runs(d) if m.lower() in PLOT_MACHINES]
    if runs:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        colors = {"normal": "C0", "sot": "C1", "sot-eager": "C2", "auto": "C4"}
        for (machine, r), marker in zip(runs, ("o", "s", "^", "v", "D"), strict=False):
            for mode, color in colors.items():
                rs = sorted((t for t in r.get("table4", []) if t["mode"] == mode), key=lambda t: t["rate"])
                if not rs:
                    continue
                xs = [t["offered_rate"] for t in rs]
                ax1.plot(xs, [t["p50_s"] for t in rs], marker + "-", color=color, label=f"{mode} p50 ({machine})")
                ax2.plot(xs, [t["output_tokens_per_s"] for t in rs], marker + "-", color=color,
                         label=f"{mode} ({machine})")
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("offered arrival rate (answers/s, measured; Poisson)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax1.set_ylabel("p50 latency (s)")
        ax2.set_ylabel("output tokens/s")
        fig.suptitle("issue 13: latency vs load, 7 points x 80 tokens, 1500 context, 7B shape, H200 "
                     f"(machines {', '.join(m for m, _ in runs)})")
        fig.tight_layout()
        fig.savefig(out / "gpu_latency_vs_load.png", dpi=110)
        made.append("gpu_latency_vs_load.png")
    return made


def replace_block(text: str, start: str, end: str, body: str) -> str:
    if start not in text:
        return text
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--doc", default="docs/archive/benchmarks-history.md")
    a = ap.parse_args()
    d = Path(a.results)
    pa, pb = load(d, "pipeline_7b_a"), load(d, "pipeline_7b_b")
    if pa:
        rows = speed_single_user_rows(d) + single_user_rows(pa, pb, SHAPE_7B)
        (d / "gpu_single_user.json").write_text(json.dumps(rows, indent=1))
    if speed_runs(d):
        (d / "gpu_load.json").write_text(json.dumps(load_rows(d), indent=1))
    md, facts = md_tables(d)
    doc = Path(a.doc)
    text = doc.read_text() if doc.exists() else f"{START}\n{END}\n"
    text = replace_block(text, SPEED_START, SPEED_END, speed_tables(d))
    text = replace_block(text, START, END, md)
    doc.write_text(text)
    print(md)
    print("plots:", plots(d, d), "facts:", facts)


if __name__ == "__main__":
    main()
