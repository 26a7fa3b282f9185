"""Which head the SoT-R router should ship: chosen on LIMA only, reported on three sets (issue 24).

    python benchmarks/router_heads.py --labels ../shared/data/sot [--cache /tmp/sotrag-router-cuts]

Protocol (as ``router_cuts.py``): LIMA is split once, by a hash of each question, into 801 questions to train on
and a fixed hold-out of 229 that nothing is fit or chosen on. Every head gets the shipped int8 ONNX features of
the shipped cut (first 24 + last 22 tokens), picks its C by 5-fold out-of-fold (OOF) log-loss on the 801 and its
threshold on the OOF probabilities (max F1, the rule shipped before, or max accuracy; both at OOF precision >= 0.70), is
fit on the 801, and is reported on the LIMA hold-out, Vicuna-80 and WizardLM. The rule for shipping, fixed before
the test sets were read: the best LIMA hold-out accuracy among heads whose OOF log-loss is no worse than the
logistic head's. The test sets choose nothing.

The ``logistic`` and ``svm-rbf`` rows run ``routing.training.fit_head``, the code ``train-router`` runs; the
others are the variants tried and not shipped. Writes ``benchmarks/results/router_heads.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from router_cuts import CUTS, features, holdout_mask, machine

RESULTS = Path(__file__).parent / "results"
Predict = Callable[[str, np.ndarray], np.ndarray]  # (set name, row indices) -> P(suits SoT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, default=Path("../shared/data/sot"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sotrag-router-cuts"))
    ap.add_argument("--out", type=Path, default=RESULTS / "router_heads.json")
    ap.add_argument("--quick", action="store_true", help="only the logistic and svm-rbf heads")
    args = ap.parse_args()

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier

    from sotrag.app.routing.classifier import OnnxQuestionEncoder
    from sotrag.app.routing.training import (
        C_GRID,
        DEFAULT_LAYERS,
        SVM_C_GRID,
        HeadOptions,
        choose_threshold,
        fit_head,
        metrics,
        read_labels,
    )
    from sotrag.retrieval.embedder import DEFAULT_EMBEDDING_MODEL

    sets = {
        "lima": read_labels(args.labels / "lima_router_labels.csv"),
        "vicuna80": read_labels(args.labels / "vicuna80_router_labels.csv"),
        "wizardlm": read_labels(args.labels / "wizardlm_router_labels.csv"),
    }
    hold = holdout_mask(sets["lima"].questions)
    tr = np.flatnonzero(~hold)
    y_tr = sets["lima"].labels[tr]
    enc = OnnxQuestionEncoder(DEFAULT_EMBEDDING_MODEL, DEFAULT_LAYERS, 48)
    cut, whole = CUTS["head 24 + tail 22 (shipped)"], CUTS["whole (256)"]
    x = {n: features(enc, cut, n, d.questions, args.cache) for n, d in sets.items()}
    texts = {n: np.array(d.questions, dtype=object) for n, d in sets.items()}

    def sklearn_head(make: Callable[[], Any], feats: Callable[[str, np.ndarray, Any], Any]) -> tuple[Any, Any]:
        """OOF probabilities on the 801 and a predictor fit on all 801, for a head outside training.fit_head."""
        def fit(rows: np.ndarray) -> Predict:
            state: dict[str, Any] = {}
            model = make().fit(feats("lima", rows, state), sets["lima"].labels[rows])
            return lambda n, r: model.predict_proba(feats(n, r, state))[:, 1]

        oof = np.zeros(len(tr))
        for a, b in StratifiedKFold(5, shuffle=True, random_state=0).split(tr, y_tr):
            oof[b] = fit(tr[a])("lima", tr[b])
        return oof, fit(tr)

    def standardized(n: str, rows: np.ndarray, state: dict[str, Any], src: dict[str, np.ndarray] = x) -> Any:
        if "mean" not in state:
            state["mean"], state["scale"] = src[n][rows].mean(0), src[n][rows].std(0) + 1e-12
        return (src[n][rows] - state["mean"]) / state["scale"]

    candidates: list[tuple[str, Callable[[], tuple[np.ndarray, Predict, float]]]] = []

    def shipped_head(kind: str, grid: tuple[float, ...]) -> Callable[[], tuple[np.ndarray, Predict, float]]:
        def run() -> tuple[np.ndarray, Predict, float]:
            fit = fit_head(x["lima"][tr], y_tr, HeadOptions(head=kind, c_grid=grid))
            return fit.oof, lambda n, r: fit.probabilities(x[n][r]), fit.c
        return run

    candidates.append(("logistic (shipped before)", shipped_head("logistic", C_GRID)))
    candidates.append(("svm-rbf", shipped_head("svm-rbf", SVM_C_GRID)))
    if not args.quick:
        for c in SVM_C_GRID:
            candidates.append((f"svm-rbf, C fixed at {c}", shipped_head("svm-rbf", (c,))))
        xw = {n: features(enc, whole, n, d.questions, args.cache) for n, d in sets.items()}
        both = {n: np.hstack([x[n], xw[n]]) for n in sets}

        def lr(src: dict[str, np.ndarray]) -> Callable[[], tuple[np.ndarray, Predict, float]]:
            def run() -> tuple[np.ndarray, Predict, float]:
                oof, pred = sklearn_head(lambda: LogisticRegression(C=0.001, max_iter=5000, tol=1e-6),
                                         lambda n, r, s: standardized(n, r, s, src))
                return oof, pred, 0.001
            return run

        def lexical(n: str, rows: np.ndarray, state: dict[str, Any]) -> Any:
            from scipy import sparse

            if "tfidf" not in state:
                state["tfidf"] = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
                state["tfidf"].fit(texts[n][rows])
            words = state["tfidf"].transform(texts[n][rows]) * np.sqrt(x[n].shape[1])
            return sparse.hstack([sparse.csr_matrix(standardized(n, rows, state)), words]).tocsr()

        candidates += [
            ("logistic, cut + whole question (2 encoder passes)", lr(both)),
            ("logistic + word 1-2-gram TF-IDF of the whole question",
             lambda: (*sklearn_head(lambda: LogisticRegression(C=0.001, max_iter=5000, tol=1e-6), lexical), 0.001)),
            ("MLP, 64 hidden, alpha 30",
             lambda: (*sklearn_head(lambda: MLPClassifier((64,), alpha=30.0, max_iter=500, random_state=0),
                                    standardized), 0.0)),
        ]

    rows = []
    for name, run in candidates:
        t0 = time.perf_counter()
        oof, predict, c = run()
        ll, auc = float(log_loss(y_tr, np.clip(oof, 1e-7, 1 - 1e-7))), float(roc_auc_score(y_tr, oof))
        thresholds = {  # both at OOF precision >= 0.70 (training.choose_threshold)
            "f1@p0.70": choose_threshold(y_tr, oof, 1.0, 0.70, "fbeta"),
            "accuracy@p0.70": choose_threshold(y_tr, oof, 1.0, 0.70, "accuracy"),
        }
        probs = {"lima_holdout": (predict("lima", np.flatnonzero(hold)), sets["lima"].labels[hold]),
                 **{n: (predict(n, np.arange(len(sets[n].labels))), sets[n].labels) for n in ("vicuna80", "wizardlm")}}
        for rule, t in thresholds.items():
            row: dict[str, Any] = {"head": name, "C": c, "threshold_rule": rule, "threshold": t,
                                   "lima_oof": {"log_loss": round(ll, 4), "auc": round(auc, 4),
                                                "accuracy": round(metrics(y_tr, oof >= t).accuracy, 4),
                                                "f1": round(metrics(y_tr, oof >= t).f1, 4)}}
            for n, (p, y) in probs.items():
                m = metrics(y, p >= t)
                row[n] = {"accuracy": round(m.accuracy, 4), "f1": round(m.f1, 4), "correct": m.tp + m.tn, "n": m.n,
                          "confusion": [[m.tp, m.fn], [m.fp, m.tn]]}
            rows.append(row)
            print(f"{name:52} | {rule:14} | C {c:<6} t {t:.2f} | OOF ll {ll:.4f} auc {auc:.3f} acc "
                  f"{row['lima_oof']['accuracy']:.3f} | hold-out {row['lima_holdout']['accuracy']:.3f} "
                  f"({row['lima_holdout']['correct']}) | vicuna {row['vicuna80']['accuracy']:.3f} "
                  f"| wizardlm {row['wizardlm']['accuracy']:.3f} | {time.perf_counter() - t0:.0f}s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine(),
        "encoder": "onnx-int8", "cut": "first 24 + last 22 tokens",
        "lima": {"train": len(tr), "holdout": int(hold.sum())},
        "rows": rows,
    }, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
