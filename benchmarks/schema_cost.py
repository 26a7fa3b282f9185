"""What a client's ``response_format`` schema costs: xgrammar's conversion (sotrag's worker thread,
``json_grammar.compact_json_grammar``) and its grammar compilation (vLLM's engine, for the tokenizer's vocabulary),
per schema shape and size. The limits in ``json_grammar`` (``SchemaLimits``) are chosen from this table.

    python benchmarks/schema_cost.py --tokenizer MODEL_DIR [--tokenizer MODEL_DIR2] [--budget-s 20] [--out FILE]

MODEL_DIR is a Hugging Face tokenizer folder (the tests' tiny model, or a real model's: compile time grows with the
vocabulary). Each family grows until one schema takes over ``--budget-s``; the row at each family's limit is the
largest schema the limits let through. Rows: bytes, convert s, compile s, and whether ``check_schema`` admits it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout

from sotrag.app.engines.json_grammar import LIMITS, SchemaError, check_schema


def props(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


def required_props(n: int) -> dict[str, Any]:
    return {**props(n), "required": [f"p{i}" for i in range(n)]}


def deep(n: int) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "string"}
    for _ in range(n):
        d = {"type": "object", "properties": {"a": d}, "required": ["a"]}
    return d


def enum(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"enum": [f"value-{i}" for i in range(n)]}}, "required": ["a"]}


def any_of(n: int) -> dict[str, Any]:
    branches = [{"type": "object", "properties": {f"k{i}": {"type": "integer"}}, "required": [f"k{i}"]}
                for i in range(n)]
    return {"type": "object", "properties": {"a": {"anyOf": branches}}, "required": ["a"]}


def refs(n: int) -> dict[str, Any]:
    """A chain of definitions each used twice by the next: expanded inline it would double per level."""
    defs: dict[str, Any] = {"d0": {"type": "string"}}
    for i in range(1, n + 1):
        defs[f"d{i}"] = {"type": "object", "properties": {"x": {"$ref": f"#/$defs/d{i - 1}"},
                                                        "y": {"$ref": f"#/$defs/d{i - 1}"}}}
    return {"$defs": defs, "$ref": f"#/$defs/d{n}"}


def max_length(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "string", "maxLength": n}}, "required": ["a"]}


def two_max_length(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "string", "maxLength": n},
                                             "b": {"type": "string", "maxLength": n - 1}}, "required": ["a", "b"]}


def min_items(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}, "minItems": n}},
            "required": ["a"]}


def pattern_repeat(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "string", "pattern": f"^.{{1,{n}}}$"}},
            "required": ["a"]}


def int_range(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "integer", "minimum": -(10**n), "maximum": 10**n}},
            "required": ["a"]}


FAMILIES: dict[str, tuple[Callable[[int], dict[str, Any]], list[int]]] = {
    "optional properties": (props, [50, 100, 200, 256, 400, 800, 1600]),
    "required properties": (required_props, [50, 100, 200, 256, 400, 800]),
    "nesting depth": (deep, [8, 16, 32, 64, 128, 300]),
    "enum values": (enum, [64, 256, 1024, 4096]),
    "anyOf branches": (any_of, [16, 64, 256, 1024]),
    "$ref chain (doubling)": (refs, [4, 8, 16, 24]),
    "maxLength": (max_length, [8, 16, 32, 33, 100, 1000]),
    "two maxLength": (two_max_length, [8, 16, 17, 32]),
    "minItems": (min_items, [100, 1000, 10_000]),
    "pattern .{1,n}": (pattern_repeat, [8, 15, 16, 32, 1000]),
    "integer range 10^n": (int_range, [3, 9, 15]),
}


def measure(compiler: Any, schema: dict[str, Any]) -> tuple[float, float | None, str | None]:
    import xgrammar

    text = json.dumps(schema)
    t = time.perf_counter()
    try:
        grammar = xgrammar.Grammar.from_json_schema(text, any_whitespace=False, separators=(",", ":"))
    except Exception as exc:
        return time.perf_counter() - t, None, str(exc).splitlines()[0][:80]
    convert = time.perf_counter() - t
    t = time.perf_counter()
    compiler.compile_grammar(grammar)
    return convert, time.perf_counter() - t, None


def admitted(schema: dict[str, Any]) -> str:
    try:
        check_schema(schema)
    except SchemaError as exc:
        return "refused: " + str(exc).split(": ", 1)[-1][:60]
    return "admitted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", action="append", required=True, help="a Hugging Face tokenizer folder")
    parser.add_argument("--budget-s", type=float, default=20.0, help="stop a family after a schema this slow")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import xgrammar
    from transformers import AutoTokenizer

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    report: dict[str, Any] = {
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                    "xgrammar": importlib.metadata.version("xgrammar"),
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "limits": LIMITS.__dict__, "rows": [],
    }
    print(f"# {cpu}, {os.cpu_count()} cores, xgrammar {report['machine']['xgrammar']}; limits {LIMITS.__dict__}")
    for folder in args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer), cache_enabled=False)
        vocab = len(tokenizer)
        print(f"\n## tokenizer {Path(folder).name} (vocabulary {vocab})")
        print(f"{'family':24} {'size':>7} {'bytes':>8} {'convert s':>10} {'compile s':>10}  check_schema")
        for family, (make, sizes) in FAMILIES.items():
            for size in sizes:
                schema = make(size)
                convert, compile_s, error = measure(compiler, schema)
                verdict = admitted(schema)
                shown = f"{compile_s:10.3f}" if compile_s is not None else f"{'error':>10}"
                print(f"{family:24} {size:>7} {len(json.dumps(schema)):>8} {convert:10.3f} {shown}  {verdict}"
                      + (f" ({error})" if error else ""), flush=True)
                report["rows"].append({"tokenizer": Path(folder).name, "vocab": vocab, "family": family,
                                       "size": size, "bytes": len(json.dumps(schema)), "convert_s": convert,
                                       "compile_s": compile_s, "error": error, "check_schema": verdict})
                if convert + (compile_s or 0) > args.budget_s:
                    break
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
