"""The router's kernel head: an RBF support-vector machine with Platt calibration, in plain numpy.

Why a kernel head: on frozen MiniLM features a linear head stopped improving; richer linear
inputs (lexical n-grams, the whole question next to its cut) did not move it, while an RBF SVM on the same
features gave better out-of-fold log-loss and accuracy and a better LIMA hold-out (docs/router.md, "The head";
``benchmarks/router_heads.py``). It reads the same standardized features as the logistic head, so the encoder
and its latency are unchanged; the head itself is one (support vectors x features) matrix-vector product.

Fit with scikit-learn (``fit_kernel_head``), served without it (``KernelHead.decision``). The support vectors are
stored as float16 (half the artifact's bytes; the probabilities barely move, checked in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

KERNEL = "svm-rbf"


@dataclass(frozen=True)
class KernelHead:
    """f(z) = sum_i dual_i * exp(-gamma * |z - support_i|^2) + intercept on standardized features z;
    P(suits SoT) = sigmoid(platt_a * f + platt_b), with (a, b) fit on out-of-fold decision values."""

    support: np.ndarray  # (n_support, n_features), float32 at run time (float16 in the artifact)
    dual: np.ndarray  # (n_support,)
    intercept: float
    gamma: float
    platt_a: float
    platt_b: float
    _sq: np.ndarray = field(init=False, repr=False, compare=False)  # |support_i|^2, for the distances
    _support_t: np.ndarray = field(init=False, repr=False, compare=False)  # (features, support), contiguous

    def __post_init__(self) -> None:
        support = np.asarray(self.support, dtype=np.float32)
        object.__setattr__(self, "support", support)
        object.__setattr__(self, "dual", np.asarray(self.dual, dtype=np.float32))
        object.__setattr__(self, "_sq", (support.astype(np.float64) ** 2).sum(1).astype(np.float32))
        object.__setattr__(self, "_support_t", np.ascontiguousarray(support.T))

    def decision(self, z: np.ndarray) -> np.ndarray:
        z32 = np.atleast_2d(np.asarray(z, dtype=np.float32))
        # einsum, not matmul: numpy's own C loop on the calling thread (over the transposed, contiguous support
        # vectors, the faster layout). A matmul of this size goes to BLAS, whose threads (OpenBLAS: one per core)
        # fight the server's work for the cores: on a loaded host that made this product far slower (measured in
        # docs/router.md, "The head").
        cross = np.einsum("qf,fs->qs", z32, self._support_t, optimize=False)
        d2 = self._sq[None, :] - 2.0 * cross + np.einsum("qf,qf->q", z32, z32, optimize=False)[:, None]
        k = np.exp(-self.gamma * np.maximum(d2, 0.0))
        return np.einsum("qs,s->q", k, self.dual, optimize=False).astype(np.float64) + self.intercept

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        return platt(self.decision(z), self.platt_a, self.platt_b)

    def rounded(self) -> KernelHead:
        """The head as the artifact stores it (float16 support vectors)."""
        return KernelHead(
            self.support.astype(np.float16), self.dual, self.intercept, self.gamma, self.platt_a, self.platt_b
        )


def head_probabilities(
    features: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float,
    kernel: KernelHead | None,
) -> np.ndarray:
    """P(suits SoT) of raw feature rows: standardized, then the kernel head, or the logistic one (``coef``)."""
    z = (features - mean) / scale
    if kernel is not None:
        return kernel.probabilities(z)
    return platt(z @ coef, 1.0, intercept)


def platt(f: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(f) + b)))


def fit_platt(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sigmoid calibration of decision values (fit on out-of-fold ones, so it is not the training fit's
    over-confidence that gets calibrated)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e6, max_iter=1000, tol=1e-10).fit(np.asarray(f).reshape(-1, 1), y)
    return float(clf.coef_[0, 0]), float(clf.intercept_[0])


def svm_decisions(z: np.ndarray, y: np.ndarray, c: float, z_eval: np.ndarray) -> np.ndarray:
    """Fit an RBF SVM on standardized ``z`` and return its decision values on ``z_eval`` (for cross-validation)."""
    return _svc(z, y, c).decision_function(z_eval)


def fit_kernel_head(z: np.ndarray, y: np.ndarray, c: float, platt_ab: tuple[float, float]) -> KernelHead:
    clf = _svc(z, y, c)
    return KernelHead(
        support=clf.support_vectors_,
        dual=clf.dual_coef_[0],
        intercept=float(clf.intercept_[0]),
        gamma=gamma_for(z.shape[1]),
        platt_a=platt_ab[0],
        platt_b=platt_ab[1],
    )


def gamma_for(n_features: int) -> float:
    """1 / n_features: scikit-learn's ``gamma="scale"`` on standardized features (variance 1)."""
    return 1.0 / n_features


def _svc(z: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.svm import SVC

    return SVC(C=c, kernel="rbf", gamma=gamma_for(z.shape[1]), tol=1e-5).fit(z, y)
