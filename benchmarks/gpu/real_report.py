"""Merge ``real_shapes.py`` outputs (one per machine start) into ``benchmarks/results/gpu_real_shapes.json`` and print
the tables: per machine and overall, per source model and mode, the median / p10 / p90 speed-up and bound and
their ratios; the fixed 7 x 80 row; the replay's own cost; the load table.

Usage: ``python benchmarks/gpu/real_report.py RAW.json [RAW.json ...] [--out benchmarks/results/gpu_real_shapes.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_shapes import print_summary, summarize


def _interp(steps: dict[int, float], b: int) -> float:
    lo = max((k for k in steps if k <= b), default=min(steps))
    hi = min((k for k in steps if k >= b), default=max(steps))
    return steps[lo] if hi == lo else steps[lo] + (steps[hi] - steps[lo]) * (b - lo) / (hi - lo)


def _fit(xs: list[list[float]], ys: list[float]) -> list[float]:
    """Least-squares coefficients of ``ys`` on the columns of ``xs`` (with an intercept first)."""
    import numpy as np

    a = np.c_[np.ones(len(ys)), np.array(xs, dtype=float)]
    return [float(c) for c in np.linalg.lstsq(a, np.array(ys), rcond=None)[0]]


def stage_breakdown(run: dict) -> dict | None:
    """Where SoT's time goes against the step-count bound, from the rows' stage times (runs from B on):
    each stage fitted as fixed ms + ms per token (+ ms per point for the expansion), and the ratio to a bound
    that also counts the prefill both modes pay (the normal answer's time to first token) and the batched
    step's cost."""
    real = [
        r
        for r in run.get("rows", [])
        if r["source_model"] != "fixed-7x80" and r["mode"] == "sot" and r.get("expansion_s") and r.get("skeleton_s")
    ]
    steps = {s["batch"]: s["step_ms"] for s in run.get("steps") or []}
    if len(real) < 5 or 1 not in steps:
        return None
    normal = _fit([[r["normal_tokens"]] for r in real], [r["normal_s"] * 1e3 for r in real])
    skeleton = _fit([[r["skeleton_tokens"]] for r in real], [r["skeleton_s"] * 1e3 for r in real])
    expansion = _fit([[r["longest_point_tokens"], r["points"]] for r in real], [r["expansion_s"] * 1e3 for r in real])
    ratios_prefill, ratios_both = [], []
    for r in real:
        prefill = r["normal_ttft_s"] * 1e3
        t1, tb = steps[1], _interp(steps, r["points"])
        normal_ms = prefill + r["normal_tokens"] * t1
        ratios_prefill.append(
            r["speedup"] / (normal_ms / (prefill + (r["skeleton_tokens"] + r["longest_point_tokens"]) * t1))
        )
        ratios_both.append(
            r["speedup"] / (normal_ms / (prefill + r["skeleton_tokens"] * t1 + r["longest_point_tokens"] * tb))
        )
    return {
        "n": len(real),
        "normal_ms": {"fixed": normal[0], "per_token": normal[1]},
        "skeleton_ms": {"fixed": skeleton[0], "per_token": skeleton[1]},
        "expansion_ms": {"fixed": expansion[0], "per_longest_token": expansion[1], "per_point": expansion[2]},
        "normal_ttft_ms_median": statistics.median(r["normal_ttft_s"] for r in real) * 1e3,
        "sot_overhead_ms_median": statistics.median(
            (r["sot_s"] - r["skeleton_s"] - r["expansion_s"]) * 1e3 for r in real
        ),
        "median_ratio_to_bound_with_prefill": statistics.median(ratios_prefill),
        "median_ratio_to_bound_with_prefill_and_batch_step": statistics.median(ratios_both),
        "median_ratio_to_bound": statistics.median(r["ratio"] for r in real),
        "hand_over_ms": run.get("hand_over"),
    }


def group_hand_over(run: dict) -> dict | None:
    """Runs with ``--apart``: per answer, SoT with its points handed to vLLM one by one minus SoT with them as one
    group (the two ran in turns on the same engine start)."""
    rows = [r for r in run.get("rows", []) if r["source_model"] != "fixed-7x80"]
    apart = {(r["source_model"], r["question_id"]): r["sot_s"] for r in rows if r["mode"] == "sot-apart"}
    diffs = [
        apart[(r["source_model"], r["question_id"])] - r["sot_s"]
        for r in rows
        if r["mode"] == "sot" and (r["source_model"], r["question_id"]) in apart
    ]
    if not diffs:
        return None
    return {
        "n": len(diffs),
        "apart_minus_group_ms_median": statistics.median(diffs) * 1e3,
        "apart_minus_group_ms_mean": statistics.fmean(diffs) * 1e3,
        "group_faster": sum(d > 0 for d in diffs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("raw", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/gpu_real_shapes.json")
    ap.add_argument("--note", default="", help="what the runs were (machine starts, versions), kept in the output")
    ap.add_argument(
        "--per-mode-contexts",
        default="",
        help="labels of runs whose load sets had passages of their own per mode, recorded before real_shapes.py "
        "wrote load_contexts (comma-separated)",
    )
    a = ap.parse_args()
    per_mode = set(filter(None, a.per_mode_contexts.split(",")))
    runs = [json.loads(Path(p).read_text()) for p in a.raw]
    rows = [r for run in runs for r in run.get("rows", [])]
    machines = []
    for run in runs:
        label = run["label"]
        m = {
            "machine": label,
            "gpu": run.get("gpu"),
            "host": run.get("host"),
            "vllm": run.get("vllm"),
            "torch": run.get("torch"),
            "tokens_per_word": run.get("tokens_per_word"),
            "steps": run.get("steps"),
            "replay_cost": run.get("replay_cost"),
            "load": [{k: v for k, v in x.items() if k != "latencies"} for x in run.get("load", [])],
            # "shared": every mode of a rate had the same passages, so each mode after the first found them in
            # vLLM's prefix cache and the content cache: those tables favour the later modes (context_seed)
            "load_contexts": run.get("load_contexts", "per mode" if label in per_mode else "shared")
            if run.get("load")
            else None,
            "summary": summarize([r for r in run.get("rows", [])]),
        }
        real = [r for r in run.get("rows", []) if r["source_model"] != "fixed-7x80" and r["mode"] == "sot"]
        if len(real) > 2:  # replayed normal answers: wall = a + b * tokens; b against the batch-1 decode step
            xs, ys = [r["normal_tokens"] for r in real], [r["normal_s"] for r in real]
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
            m["replayed_normal_ms_per_token"] = b * 1e3
            m["replayed_normal_fixed_ms"] = (my - b * mx) * 1e3
        steps = {s["batch"]: s["step_ms"] for s in run.get("steps") or []}
        if 1 in steps and len(steps) > 1:  # the bound in time: points decode in a batch, whose step costs more
            for r in run.get("rows", []):
                if r["source_model"] != "fixed-7x80" and r["mode"] == "sot" and r["points"]:
                    sb = _interp(steps, r["points"])
                    r["bound_time"] = (
                        r["normal_tokens"]
                        * steps[1]
                        / (r["skeleton_tokens"] * steps[1] + r["longest_point_tokens"] * sb)
                    )
            bt = [r["speedup"] / r["bound_time"] for r in run.get("rows", []) if r.get("bound_time")]
            if bt:
                m["median_speedup_over_time_bound"] = statistics.median(bt)
        m["stages"] = stage_breakdown(run)
        m["group_hand_over"] = group_hand_over(run)
        m["per_point"] = run.get("per_point_summary")
        fixed = [r for r in run.get("rows", []) if r["source_model"] == "fixed-7x80"]
        for mode in ("sot", "sot-eager"):
            sel = [r for r in fixed if r["mode"] == mode]
            if sel:
                m[f"fixed_{mode}"] = {
                    "reps": len(sel),
                    "speedup_median": statistics.median(r["speedup"] for r in sel),
                    "normal_s": statistics.median(r["normal_s"] for r in sel),
                    "sot_s": statistics.median(r["sot_s"] for r in sel),
                    "bound_median": statistics.median(r["bound"] for r in sel if r["bound"])
                    if any(r["bound"] for r in sel)
                    else None,
                }
        machines.append(m)
        print(
            f"== {label}: {run.get('gpu')} / {(run.get('host') or {}).get('cpu_model')}; vLLM {run.get('vllm')}; "
            f"tokens/word {run.get('tokens_per_word')}"
        )
        print_summary(m["summary"], label)
        for mode in ("sot", "sot-eager"):
            if f"fixed_{mode}" in m:
                f = m[f"fixed_{mode}"]
                print(
                    f"[{label}] fixed 7x80 {mode}: x{f['speedup_median']:.2f} (normal {f['normal_s'] * 1e3:.0f} ms, "
                    f"sot {f['sot_s'] * 1e3:.0f} ms, {f['reps']} reps)"
                )
        if "replayed_normal_ms_per_token" in m:
            print(
                f"[{label}] replayed normal answers: {m['replayed_normal_ms_per_token']:.2f} ms a token "
                f"(+{m['replayed_normal_fixed_ms']:.0f} ms); batch-1 decode step {steps.get(1, float('nan')):.2f} ms"
            )
        if "median_speedup_over_time_bound" in m:
            print(
                f"[{label}] median speed-up / bound in time (batch step costs): "
                f"{m['median_speedup_over_time_bound']:.3f}"
            )
        if m["stages"]:
            g = m["stages"]
            print(
                f"[{label}] stages (fits, ms): normal {g['normal_ms']['fixed']:.0f} + {g['normal_ms']['per_token']:.2f}"
                f"/token; skeleton {g['skeleton_ms']['fixed']:.0f} + {g['skeleton_ms']['per_token']:.2f}/token; "
                f"expansion {g['expansion_ms']['fixed']:.0f} + {g['expansion_ms']['per_longest_token']:.2f}/longest "
                f"token + {g['expansion_ms']['per_point']:.2f}/point; pipeline outside the stages "
                f"{g['sot_overhead_ms_median']:.1f}"
            )
            print(
                f"[{label}] median speed-up / bound {g['median_ratio_to_bound']:.3f} (per answer); with the prefill "
                f"in the bound {g['median_ratio_to_bound_with_prefill']:.3f}; and the batched step "
                f"{g['median_ratio_to_bound_with_prefill_and_batch_step']:.3f}"
            )
            if g["hand_over_ms"]:
                print(f"[{label}] hand-over (median ms): {g['hand_over_ms']}")
        if m["group_hand_over"]:
            h = m["group_hand_over"]
            print(
                f"[{label}] the points as one group against one by one, paired per answer: one by one took "
                f"{h['apart_minus_group_ms_median']:.1f} ms longer at the median "
                f"(mean {h['apart_minus_group_ms_mean']:.1f}); "
                f"the group was faster in {h['group_faster']} of {h['n']}"
            )
        if m["per_point"]:
            pp = m["per_point"]
            print(
                f"[{label}] per-point grounding: SoT {pp['sot_s_median'] * 1e3:.0f} ms -> "
                f"{pp['per_point_s_median'] * 1e3:.0f} ms (median time ratio {pp['time_ratio_median']:.3f}, "
                f"p90 {pp['time_ratio_p90']:.3f}); "
                f"+{pp['extra_uncached_prompt_tokens_per_point_median']:.0f} uncached prompt tokens a point"
            )
        if m["replay_cost"]:
            c = m["replay_cost"]
            print(
                f"[{label}] replay cost {c['per_step_ms']:.4f} ms/step = {100 * c['share_of_batch1_step']:.2f}% of the "
                f"batch-1 step ({c['batch1_step_ms']:.2f} ms)"
            )
        if m["load"] and m["load_contexts"] == "shared":
            print(
                f"[{label}] load: the same passages for every mode of a rate (before context_seed): each mode after "
                f"the first ({m['load'][0]['mode']}) found its contexts cached, so the later modes are favoured"
            )
        for x in m["load"]:
            print(
                f"[{label}] load {x['rate']:>4}/s {x['mode']:>9}: p50 {x['p50_s']:.2f}s p90 {x['p90_s']:.2f}s "
                f"{x['output_tokens_per_s']:.0f} tok/s sot_share {x['sot_share']:.2f}"
                + (
                    f" first request cached {x['first_request_cached_tokens_median']:.0f} tokens"
                    if "first_request_cached_tokens_median" in x
                    else ""
                )
            )
    overall = summarize(rows)
    print("== all runs together")
    print_summary(overall, "all")
    out = {"note": a.note, "runs": machines, "summary_all_runs": overall, "rows": rows}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
