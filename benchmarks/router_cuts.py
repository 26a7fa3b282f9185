"""Which question cut and which head the SoT-R router should ship: chosen on LIMA only, reported on three sets.

    python benchmarks/router_cuts.py --labels ../shared/data/sot [--cache /tmp/sotrag-router-cuts]

Protocol. LIMA (``lima_router_labels.csv``) is split once, by a hash of each question, into a training part (4/5)
and a fixed hold-out (1/5) that nothing is ever fit or chosen on. Every cut (how many of a long question's
tokens the encoder sees: its head, its tail, or all of it) and every head setting (regularization C, class
weights, the threshold rule, a question-length feature) is scored by 5-fold out-of-fold log-loss and accuracy on
the LIMA training part; the head is then fit on the whole training part and reported on the LIMA hold-out,
Vicuna-80 and WizardLM. The test sets choose nothing. Features are the shipped int8 ONNX encoder's (one
question at a time, as served), cached per cut under ``--cache``.

Writes ``benchmarks/results/router_cuts.json`` and prints one table row per (cut, head).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"

# (max_length, tail_tokens): the encoder sees [CLS] + at most max_length - 2 content tokens + [SEP].
CUTS: dict[str, tuple[int, int]] = {
    "whole (256)": (256, 0),
    "head 126 + tail 0": (128, 0),
    "head 64 + tail 62": (128, 62),
    "head 46 + tail 0": (48, 0),
    "head 36 + tail 10": (48, 10),
    "head 24 + tail 22 (shipped)": (48, 22),
    "head 16 + tail 30": (48, 30),
    "head 8 + tail 38": (48, 38),
    "head 0 + tail 46": (48, 46),
    "head 32 + tail 30": (64, 30),
}


sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import machine  # noqa: E402  (the CPU, threads and versions of the run, beside every router result)


def holdout_mask(questions: list[str]) -> np.ndarray:
    """The fixed LIMA hold-out: 1 in 5 questions, by the SHA-1 of the text (no seed, no order dependence)."""
    return np.array([int(hashlib.sha1(q.encode()).hexdigest(), 16) % 5 == 0 for q in questions])


def features(encoder: Any, cut: tuple[int, int], name: str, texts: list[str], cache: Path) -> np.ndarray:
    key = hashlib.sha1(json.dumps([cut, texts]).encode()).hexdigest()[:16]
    path = cache / f"{name}-{cut[0]}-{cut[1]}-{key}.npy"
    if path.is_file():
        return np.load(path)
    encoder.max_length, encoder.tail_tokens = cut
    t = time.perf_counter()
    x = encoder.encode(texts)
    print(f"  features {name} cut {cut}: {len(texts)} questions in {time.perf_counter() - t:.1f}s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def fit(x: np.ndarray, y: np.ndarray, c: float, balanced: bool) -> Any:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    clf = LogisticRegression(C=c, max_iter=5000, tol=1e-8, class_weight="balanced" if balanced else None)
    clf.fit((x - mean) / scale, y)
    return lambda z: clf.predict_proba((z - mean) / scale)[:, 1]


def oof(x: np.ndarray, y: np.ndarray, c: float, balanced: bool) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        out[te] = fit(x[tr], y[tr], c, balanced)(x[te])
    return out


def threshold(y: np.ndarray, p: np.ndarray, rule: str) -> float:
    from sotrag.app.routing.training import choose_threshold, metrics

    if rule == "f1@p0.70":  # the shipped rule
        return choose_threshold(y, p, 1.0, 0.70)
    grid = np.round(np.arange(0.20, 0.801, 0.01), 2)  # "accuracy": the OOF accuracy's best, ties to 0.5
    return float(max(grid, key=lambda t: (metrics(y, p >= t).accuracy, -abs(t - 0.5))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, default=Path("../shared/data/sot"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sotrag-router-cuts"))
    ap.add_argument("--cuts", default=",".join(CUTS))
    ap.add_argument("--out", type=Path, default=RESULTS / "router_cuts.json")
    args = ap.parse_args()

    from sklearn.metrics import log_loss, roc_auc_score

    from sotrag.app.routing.classifier import OnnxQuestionEncoder
    from sotrag.app.routing.training import DEFAULT_LAYERS, metrics, read_labels
    from sotrag.retrieval.embedder import DEFAULT_EMBEDDING_MODEL

    lima = read_labels(args.labels / "lima_router_labels.csv")
    tests = {
        "vicuna80": read_labels(args.labels / "vicuna80_router_labels.csv"),
        "wizardlm": read_labels(args.labels / "wizardlm_router_labels.csv"),
    }
    hold = holdout_mask(lima.questions)
    y_tr, y_ho = lima.labels[~hold], lima.labels[hold]
    print(f"LIMA: {len(y_tr)} train ({y_tr.sum()} SoT), {len(y_ho)} hold-out ({y_ho.sum()} SoT)")
    enc = OnnxQuestionEncoder(DEFAULT_EMBEDDING_MODEL, DEFAULT_LAYERS, 48)
    tok = enc._tokenizer
    length = {n: np.log1p([len(tok(q, add_special_tokens=False)["input_ids"]) for q in d.questions])
              for n, d in {"lima": lima, **tests}.items()}

    variants = [  # (label, balanced class weights, log(tokens) feature): each gets both threshold rules
        ("LR", False, False),
        ("LR balanced", True, False),
        ("LR + log(tokens)", False, True),
    ]
    grid = (0.0003, 0.001, 0.003, 0.01)
    rows = []
    for cut_name in args.cuts.split(","):
        cut = CUTS[cut_name]
        x_all = features(enc, cut, "lima", lima.questions, args.cache)
        xt = {n: features(enc, cut, n, d.questions, args.cache) for n, d in tests.items()}
        for label, balanced, with_len in variants:
            def add(x: np.ndarray, name: str, with_len: bool = with_len) -> np.ndarray:
                return np.hstack([x, length[name][:, None]]) if with_len else x

            xl = add(x_all, "lima")
            x_tr, x_ho = xl[~hold], xl[hold]
            oofs = {c: oof(x_tr, y_tr, c, balanced) for c in grid}
            losses = {c: float(log_loss(y_tr, np.clip(p, 1e-7, 1 - 1e-7))) for c, p in oofs.items()}
            c = min(grid, key=lambda k: (losses[k], k))
            p_oof = oofs[c]
            model = fit(x_tr, y_tr, c, balanced)
            preds = {"lima_holdout": (model(x_ho), y_ho),
                     **{n: (model(add(xt[n], n)), d.labels) for n, d in tests.items()}}
            for rule in ("f1@p0.70", "accuracy"):
                t = threshold(y_tr, p_oof, rule)
                row: dict[str, Any] = {
                    "cut": cut_name, "max_length": cut[0], "tail_tokens": cut[1], "head": label, "C": c,
                    "threshold_rule": rule, "threshold": t,
                    "lima_oof": {"log_loss": round(losses[c], 4), "auc": round(float(roc_auc_score(y_tr, p_oof)), 4),
                                 "accuracy": round(metrics(y_tr, p_oof >= t).accuracy, 4),
                                 "f1": round(metrics(y_tr, p_oof >= t).f1, 4)},
                }
                for n, (p, y) in preds.items():
                    m = metrics(y, p >= t)
                    row[n] = {"accuracy": round(m.accuracy, 4), "f1": round(m.f1, 4), "correct": m.tp + m.tn,
                              "n": m.n, "log_loss": round(float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7))), 4)}
                rows.append(row)
                print(
                    f"{cut_name:28} | {label:17} | {rule:8} | C {c:<6} t {t:.2f} | OOF ll "
                    f"{row['lima_oof']['log_loss']:.4f} acc {row['lima_oof']['accuracy']:.3f} | hold-out "
                    f"{row['lima_holdout']['accuracy']:.3f} ll {row['lima_holdout']['log_loss']:.3f} "
                    f"| vicuna {row['vicuna80']['accuracy']:.3f} | wizardlm {row['wizardlm']['accuracy']:.3f}",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine(),
        "encoder": "onnx-int8", "lima": {"train": len(y_tr), "holdout": len(y_ho)},
        "rows": rows,
    }, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
