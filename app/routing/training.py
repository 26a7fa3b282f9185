"""Train and evaluate the SoT-R router (``sotrag train-router`` / ``sotrag eval-router``).

Protocol (the SoT paper's): train and tune on the LIMA router labels ONLY; Vicuna-80 and WizardLM labels are
test sets, read by ``evaluate`` and never by ``train``.

Training is deterministic: features come from the frozen MiniLM in a fixed order (through the same encoder
that serves the artifact, by default the int8 ONNX graph, one question at a time), the
regularization strength and the decision threshold are chosen by stratified 5-fold cross-validation with a
fixed seed, and the head is fit by libsvm (the RBF SVM, default) or L-BFGS (the logistic head). The SVM's
probabilities are its decision values through a sigmoid fit on the out-of-fold ones. The same CSV gives the
same artifact, byte for byte.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sotrag.app.routing.classifier import (
    DEFAULT_ENCODER,
    RouterModel,
    TrainedRouter,
    make_encoder,
)
from sotrag.app.routing.heads import (
    KERNEL,
    KernelHead,
    fit_kernel_head,
    fit_platt,
    head_probabilities,
    platt,
    svm_decisions,
)
from sotrag.retrieval.embedder import DEFAULT_EMBEDDING_MODEL

# Chosen by 5-fold CV on LIMA (out-of-fold AUC and log-loss), see docs/router.md.
DEFAULT_LAYERS = (1, 2, 3, 4, 5, 6)
# A question over 48 tokens keeps its first 24 and its last 22 content tokens: chosen on LIMA's out-of-fold
# log-loss among 9 cuts, from the whole question (256) to head 16 + tail 14 (docs/router.md, "Long questions").
DEFAULT_MAX_LENGTH = 48
DEFAULT_TAIL_TOKENS = 22
# The head: an RBF SVM (gamma = 1 / features), chosen over the logistic head on LIMA's out-of-fold log-loss and
# accuracy and a LIMA hold-out (docs/router.md, "The head"; benchmarks/router_heads.py).
HEADS = (KERNEL, "logistic")
DEFAULT_HEAD = KERNEL
C_GRID = (0.0003, 0.001, 0.003, 0.01)  # the logistic head's
SVM_C_GRID = (0.3, 1.0, 3.0, 10.0)
# The threshold: max out-of-fold accuracy (the targets are accuracies) among thresholds with OOF precision >= 0.70;
# "fbeta" is the rule shipped before issue 24 (max F1 at that precision floor).
THRESHOLD_RULES = ("accuracy", "fbeta")
DEFAULT_THRESHOLD_RULE = "accuracy"
CV_FOLDS = 5
SEED = 0


class LabelFileError(ValueError):
    """A label CSV that cannot be used; the message is user-facing."""


@dataclass(frozen=True)
class LabelledQuestions:
    labels: np.ndarray  # int64, 1 = suits SoT
    questions: list[str]
    sha256: str
    path: str


def read_labels(path: str | Path) -> LabelledQuestions:
    """Read a ``label;request`` CSV (the SoT repository's router-label format)."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"no such file: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelFileError(f"{path} is not UTF-8 text") from None
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=";")
    if reader.fieldnames is None or not {"label", "request"} <= set(reader.fieldnames):
        raise LabelFileError(f"{path}: expected a 'label;request' header, got {reader.fieldnames}")
    labels, questions = [], []
    for lineno, row in enumerate(reader, start=2):
        label, request = (row.get("label") or "").strip(), row.get("request") or ""
        if label not in ("0", "1"):
            raise LabelFileError(f"{path}: record {lineno - 1}: label must be 0 or 1, got {label!r}")
        if not request.strip():
            raise LabelFileError(f"{path}: record {lineno - 1}: empty request")
        labels.append(int(label))
        questions.append(request)
    if not questions:
        raise LabelFileError(f"{path}: no labelled questions")
    return LabelledQuestions(np.array(labels, dtype=np.int64), questions, hashlib.sha256(raw).hexdigest(), str(path))


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    tn: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def metrics(labels: np.ndarray, predicted: np.ndarray) -> Metrics:
    y, p = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(len(y), (tp + tn) / max(len(y), 1), precision, recall, f1, tp, fp, fn, tn)


def f_beta(m: Metrics, beta: float) -> float:
    b2 = beta * beta
    denom = b2 * m.precision + m.recall
    return (1 + b2) * m.precision * m.recall / denom if denom else 0.0


# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------


def _fit_head(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = _standardizer(x)
    clf = LogisticRegression(C=c, max_iter=5000, tol=1e-8)
    clf.fit((x - mean) / scale, y)
    return mean, scale, clf.coef_[0].astype(np.float64), float(clf.intercept_[0])


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def out_of_fold(x: np.ndarray, y: np.ndarray, c: float, folds: int = CV_FOLDS, head: str = "logistic") -> np.ndarray:
    """Out-of-fold scores: P(suits SoT) for the logistic head, decision values for the SVM (calibrate them with
    ``heads.fit_platt``)."""
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros(len(y))
    n_folds = max(2, min(folds, int(np.bincount(y, minlength=2).min())))
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=SEED).split(x, y):
        if head == KERNEL:
            mean, scale = _standardizer(x[train])
            oof[test] = svm_decisions((x[train] - mean) / scale, y[train], c, (x[test] - mean) / scale)
        else:
            oof[test] = head_probabilities(x[test], *_fit_head(x[train], y[train], c), kernel=None)
    return oof


def choose_threshold(
    y: np.ndarray, p: np.ndarray, beta: float, min_precision: float, rule: str = "fbeta"
) -> float:
    """The threshold on out-of-fold P(suits SoT) that maximizes F-beta (``rule="fbeta"``) or accuracy
    (``rule="accuracy"``) among those whose precision is at least ``min_precision`` (falls back to the most
    precise one). Ties go to the higher threshold."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r} (expected one of {', '.join(THRESHOLD_RULES)})")
    grid = np.round(np.arange(0.20, 0.801, 0.01), 2)
    best, best_score, fallback, fallback_precision = 0.5, -1.0, 0.5, -1.0
    for t in grid:
        m = metrics(y, p >= t)
        if m.precision > fallback_precision:
            fallback, fallback_precision = float(t), m.precision
        score = m.accuracy if rule == "accuracy" else f_beta(m, beta)
        if m.precision >= min_precision and score >= best_score:
            best, best_score = float(t), score
    return best if best_score >= 0 else fallback


@dataclass(frozen=True)
class HeadOptions:
    """How the head is chosen: its kind, the C grid (None: the kind's own), and the threshold: a fixed one, or the
    best by ``rule`` (accuracy, or F-``beta``) among those with out-of-fold precision >= ``min_precision``."""

    head: str = DEFAULT_HEAD
    c_grid: Sequence[float] | None = None
    beta: float = 1.0
    min_precision: float = 0.70
    threshold: float | None = None
    rule: str = DEFAULT_THRESHOLD_RULE


@dataclass(frozen=True)
class HeadFit:
    """A head fit on feature rows, with what cross-validation chose (C, the threshold) and measured."""

    head: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # the logistic head's; empty for the SVM
    intercept: float
    kernel: KernelHead | None
    c: float
    threshold: float
    oof: np.ndarray  # out-of-fold P(suits SoT) at the chosen C
    cv_log_loss: dict[float, float]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return head_probabilities(x, self.mean, self.scale, self.coef, self.intercept, self.kernel)


def fit_head(x: np.ndarray, y: np.ndarray, options: HeadOptions = HeadOptions()) -> HeadFit:
    """Choose C by out-of-fold log-loss, the threshold on the out-of-fold probabilities, then fit on all rows.
    ``benchmarks/router_heads.py`` runs this same function on a LIMA split."""
    from sklearn.metrics import log_loss

    head, o = options.head, options
    if head not in HEADS:
        raise ValueError(f"unknown router head {head!r} (expected one of {', '.join(HEADS)})")
    grid = tuple(o.c_grid or (SVM_C_GRID if head == KERNEL else C_GRID))
    losses: dict[float, float] = {}
    oofs: dict[float, np.ndarray] = {}
    calibration: dict[float, tuple[float, float]] = {}
    for c in grid:
        scores = out_of_fold(x, y, c, head=head)
        if head == KERNEL:
            calibration[c] = fit_platt(scores, y)
            scores = platt(scores, *calibration[c])
        oofs[c] = scores
        losses[c] = float(log_loss(y, np.clip(scores, 1e-7, 1 - 1e-7)))
    best_c = min(grid, key=lambda c: (losses[c], c))
    oof = oofs[best_c]
    t = choose_threshold(y, oof, o.beta, o.min_precision, o.rule) if o.threshold is None else float(o.threshold)
    if head == KERNEL:
        mean, scale = _standardizer(x)
        kernel = fit_kernel_head((x - mean) / scale, y, best_c, calibration[best_c]).rounded()
        coef, intercept = np.zeros(0), 0.0
    else:
        kernel = None
        mean, scale, coef, intercept = _fit_head(x, y, best_c)
    return HeadFit(head, mean, scale, coef, intercept, kernel, best_c, t, oof, losses)


@dataclass(frozen=True)
class TrainReport:
    model: RouterModel
    c: float
    cv: Metrics
    cv_auc: float
    cv_log_loss: dict[float, float]


def train(
    data: LabelledQuestions,
    *,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    encoder: str = DEFAULT_ENCODER,
    layers: Sequence[int] = DEFAULT_LAYERS,
    max_length: int = DEFAULT_MAX_LENGTH,
    tail_tokens: int = DEFAULT_TAIL_TOKENS,
    options: HeadOptions = HeadOptions(),
) -> TrainReport:
    """Fit the router head on ``data``; tune C and the threshold by cross-validation on ``data`` only."""
    from sklearn.metrics import roc_auc_score

    y = data.labels
    if len(np.unique(y)) < 2 or np.bincount(y).min() < 2:
        raise LabelFileError(f"{data.path}: need at least 2 questions of each label to train")
    x = make_encoder(encoder, embedding_model, layers, max_length, tail_tokens=tail_tokens).encode(data.questions)
    fit = fit_head(x, y, options)
    cv = metrics(y, fit.oof >= fit.threshold)
    auc = float(roc_auc_score(y, fit.oof))
    head_info: dict[str, object] = {
        "kind": "svm_rbf" if options.head == KERNEL else "logistic_regression",
        "C": fit.c,
        "c_grid": list(fit.cv_log_loss),
    }
    if fit.kernel is not None:
        head_info["support_vectors"] = int(fit.kernel.support.shape[0])
    info = {
        "trained_on": {"file": Path(data.path).name, "sha256": data.sha256, "n": len(y), "positives": int(y.sum())},
        "head": head_info,
        "threshold_rule": {
            "rule": options.rule, "beta": options.beta, "min_precision": options.min_precision,
            "fixed": options.threshold is not None,
        },
        "cv": {
            "folds": CV_FOLDS,
            "seed": SEED,
            "auc": round(auc, 4),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in cv.as_dict().items()},
        },
    }
    model = RouterModel(
        embedding_model, tuple(layers), max_length, fit.mean, fit.scale, fit.coef, fit.intercept, fit.threshold,
        encoder=encoder, info=info, tail_tokens=tail_tokens, kernel=fit.kernel,
    )
    return TrainReport(model, fit.c, cv, auc, fit.cv_log_loss)


def evaluate(router: TrainedRouter, data: LabelledQuestions) -> Metrics:
    return metrics(data.labels, router.predict(data.questions))
