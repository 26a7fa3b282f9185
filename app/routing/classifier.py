"""The trained SoT-R question classifier: MiniLM features + a logistic head, and its artifact.

``TrainedRouter`` embeds the question with the same MiniLM the retriever uses (mean-pooled hidden states of
several layers, which carry more of the question's *form* than the final sentence embedding alone), and a
logistic-regression head trained on the LIMA router labels gives P(suits SoT). Only a question at or above an
explicit threshold goes to SoT: a list-unfriendly question forced into points costs answer quality, a missed
one only costs speed.

The trained head ships as ``app/routing/assets/router.npz`` (plain arrays plus a JSON header, loaded with
``allow_pickle=False``); ``sotrag train-router`` rebuilds it deterministically (``routing.training``).
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from sotrag.app.engines.base import EngineLoad
from sotrag.app.routing.base import RouteDecision
from sotrag.app.routing.router import SoTRouter

ARTIFACT_FORMAT = "sotrag-router/1"
DEFAULT_ARTIFACT = Path(__file__).parent / "assets" / "router.npz"


class RouterArtifactError(ValueError):
    """The router artifact is missing, unreadable, or made for another embedding model; user-facing."""


# --------------------------------------------------------------------------------------------------------
# The trained model: what the artifact holds
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterModel:
    """A logistic-regression head over standardized multi-layer MiniLM features.

    ``layers`` index the encoder's hidden states (0 = token embeddings, 6 = last layer of MiniLM-L6);
    each is mean-pooled over the question's tokens and L2-normalized, then all are concatenated.
    """

    embedding_model: str
    layers: tuple[int, ...]
    max_length: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)  # training data hash, CV metrics, hyperparameters

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[0])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: str | Path) -> Path:
        """Write the artifact (``.npz``: float32 arrays and a JSON header). Same model, same bytes."""
        path = Path(path)
        header = {
            "format": ARTIFACT_FORMAT,
            "embedding_model": self.embedding_model,
            "layers": list(self.layers),
            "max_length": self.max_length,
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "info": self.info,
        }
        arrays = {
            "header": np.array(json.dumps(header, sort_keys=True)),
            "mean": self.mean.astype(np.float32),
            "scale": self.scale.astype(np.float32),
            "coef": self.coef.astype(np.float32),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # An .npz written by hand with fixed zip timestamps: the same model gives the same bytes
        # (np.savez stamps the current time). np.load reads it as usual.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, array in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
                zf.writestr(
                    zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                    buf.getvalue(),
                    compress_type=zipfile.ZIP_DEFLATED,
                )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path = DEFAULT_ARTIFACT) -> RouterModel:
        path = Path(path)
        if not path.is_file():
            raise RouterArtifactError(f"router artifact not found: {path} (run `sotrag train-router`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                mean, scale, coef = (np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
        except (OSError, ValueError, KeyError) as exc:
            raise RouterArtifactError(f"cannot read router artifact {path}: {exc}") from None
        if header.get("format") != ARTIFACT_FORMAT:
            raise RouterArtifactError(f"{path} is not a {ARTIFACT_FORMAT} artifact (format={header.get('format')!r})")
        if not (mean.shape == scale.shape == coef.shape and coef.ndim == 1):
            raise RouterArtifactError(f"{path}: inconsistent array shapes")
        return cls(
            embedding_model=header["embedding_model"],
            layers=tuple(int(i) for i in header["layers"]),
            max_length=int(header["max_length"]),
            mean=mean,
            scale=scale,
            coef=coef,
            intercept=float(header["intercept"]),
            threshold=float(header["threshold"]),
            info=header.get("info", {}),
        )


# --------------------------------------------------------------------------------------------------------
# Features: multi-layer mean pooling over the shared MiniLM
# --------------------------------------------------------------------------------------------------------


class QuestionEncoder:
    """Question -> concatenated, L2-normalized mean-pooled hidden states of chosen MiniLM layers.

    Uses the process-wide sentence-transformers model from ``load_sentence_transformer`` (shared with
    retrieval; read-only here), and runs its underlying BERT once per batch with all hidden states.
    """

    def __init__(self, model_name: str, layers: Sequence[int], max_length: int) -> None:
        from sotrag.retrieval.embedder import load_sentence_transformer

        st = load_sentence_transformer(model_name)
        self.model_name = model_name
        self.layers = tuple(layers)
        self.max_length = max_length
        self._tokenizer = st.tokenizer
        self._bert: Any = cast(Any, st[0].auto_model)  # the transformers BertModel inside sentence-transformers
        n_hidden = int(self._bert.config.num_hidden_layers)
        if any(not 0 <= i <= n_hidden for i in self.layers):
            raise RouterArtifactError(f"layers {self.layers} do not exist in {model_name} ({n_hidden} layers)")
        self.dim = int(self._bert.config.hidden_size) * len(self.layers)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._bert(**batch, output_hidden_states=True).hidden_states
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
                pooled = [
                    torch.nn.functional.normalize((hidden[i] * mask).sum(1) / mask.sum(1), dim=-1) for i in self.layers
                ]
                out.append(torch.cat(pooled, dim=-1).to(torch.float64).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))


# --------------------------------------------------------------------------------------------------------
# Classifiers: P(suits SoT) for a question
# --------------------------------------------------------------------------------------------------------

class TrainedRouter:
    """The trained router: MiniLM features + logistic head, thresholded. Loads the shipped artifact."""

    name = "router"

    def __init__(
        self,
        model: RouterModel | None = None,
        *,
        artifact: str | Path | None = None,
        threshold: float | None = None,
    ) -> None:
        self.model = model or RouterModel.load(artifact or DEFAULT_ARTIFACT)
        self.threshold = self.model.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"router threshold must be in [0, 1], got {self.threshold}")
        self._encoder: QuestionEncoder | None = None
        self._lock = threading.Lock()

    @property
    def encoder(self) -> QuestionEncoder:
        with self._lock:  # route() runs in worker threads: load the embedder once
            if self._encoder is None:
                enc = QuestionEncoder(self.model.embedding_model, self.model.layers, self.model.max_length)
                if enc.dim != self.model.n_features:
                    raise RouterArtifactError(
                        f"router artifact expects {self.model.n_features} features from "
                        f"{self.model.embedding_model}, the loaded model gives {enc.dim}"
                    )
                self._encoder = enc
            return self._encoder

    def probabilities(self, questions: Sequence[str]) -> np.ndarray:
        return self.model.probabilities(self.encoder.encode(questions))

    def probability(self, question: str) -> float:
        return float(self.probabilities([question])[0])

    def predict(self, questions: Sequence[str]) -> np.ndarray:
        """1 = suits SoT, 0 = use normal decoding."""
        return (self.probabilities(questions) >= self.threshold).astype(np.int64)

    def route(self, question: str, load: EngineLoad | None) -> RouteDecision:
        return SoTRouter(self).route(question, load)

