"""SoT-R: decide per question whether Skeleton-of-Thought suits it, and whether the engine has room for it.

Two independent questions, answered by two parts:

* **Does the answer fall into independent points?** ``TrainedRouter`` embeds the question with the same
  MiniLM the retriever uses (mean-pooled hidden states of several layers, which carry more of the
  question's *form* than the final sentence embedding alone), and a logistic-regression head trained on the
  LIMA router labels gives P(suits SoT). Only a question at or above an explicit threshold goes to SoT:
  a list-unfriendly question forced into points costs answer quality, a missed one only costs speed.
  ``LLMRouter`` asks the served model instead (optional).
* **Can the engine afford it?** ``LoadPolicy`` reads vLLM's scheduler snapshot (``EngineLoad``). SoT turns
  one request into 1 + N concurrent ones; when the batch is nearly full or the KV cache is nearly used up,
  those extra sequences only queue, so normal decoding is faster for everyone. Otherwise the free batch
  room caps the number of points.

``SoTRouter`` combines them behind the ``Router`` protocol the pipeline calls in auto mode, with a reason
string such as ``"router: list-like, p=0.91; load: 3/256 running"``.

The trained head ships as ``app/assets/router.npz`` (plain arrays plus a JSON header, loaded with
``allow_pickle=False``); ``sotrag train-router`` rebuilds it deterministically (``router_train``).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np

from sotrag.app.engine import EngineLoad
from sotrag.app.routing import RouteDecision

if TYPE_CHECKING:
    from sotrag.app.config import RouterConfig
    from sotrag.app.engine import Engine

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


class QuestionClassifier(Protocol):
    """Anything that says how likely a question's answer is a list of independent points."""

    name: str
    threshold: float

    def probability(self, question: str) -> float: ...


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


# --------------------------------------------------------------------------------------------------------
# Load-aware policy
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadVerdict:
    ok: bool
    max_points: int | None
    text: str


@dataclass(frozen=True)
class LoadPolicy:
    """When the engine is too busy for SoT, and how many points its free batch room allows.

    ``busy`` = running + waiting sequences. SoT is refused when ``busy / max_num_seqs`` reaches
    ``max_busy_fraction``, when KV-cache use reaches ``max_kv_cache_usage``, or when fewer than
    ``min_free_seqs`` batch slots are free (the skeleton is done by then, so every point needs a slot).
    """

    max_busy_fraction: float = 0.75
    max_kv_cache_usage: float = 0.90
    min_free_seqs: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.max_busy_fraction <= 1.0:
            raise ValueError("max_busy_fraction must be in (0, 1]")
        if not 0.0 < self.max_kv_cache_usage <= 1.0:
            raise ValueError("max_kv_cache_usage must be in (0, 1]")
        if self.min_free_seqs < 1:
            raise ValueError("min_free_seqs must be >= 1")

    def check(self, load: EngineLoad | None) -> LoadVerdict:
        if load is None:
            return LoadVerdict(True, None, "load: unknown")
        busy = load.running + load.waiting
        capacity = max(load.max_num_seqs, 1)
        free = capacity - busy
        queued = f", {load.waiting} waiting" if load.waiting else ""
        usage = f"{load.running}/{capacity} running{queued}"
        kv = f"kv {load.kv_cache_usage:.0%}"
        if busy / capacity >= self.max_busy_fraction:
            return LoadVerdict(False, None, f"load: saturated, {usage} (limit {self.max_busy_fraction:.0%})")
        if load.kv_cache_usage >= self.max_kv_cache_usage:
            return LoadVerdict(False, None, f"load: {kv} >= {self.max_kv_cache_usage:.0%}, {usage}")
        if free < self.min_free_seqs:
            return LoadVerdict(False, None, f"load: {free} free slots, {usage}")
        return LoadVerdict(True, free, f"load: {usage}")


class SoTRouter:
    """The ``Router`` for ``mode="auto"``: question type first, then engine load."""

    def __init__(self, classifier: QuestionClassifier, policy: LoadPolicy | None = None) -> None:
        self.classifier = classifier
        self.policy = policy or LoadPolicy()

    def route(self, question: str, load: EngineLoad | None) -> RouteDecision:
        p = self.classifier.probability(question)
        return self.decide(p, load)

    def decide(self, p: float, load: EngineLoad | None) -> RouteDecision:
        name = self.classifier.name
        suits = p >= self.classifier.threshold
        kind = "list-like" if suits else "not list-like"
        verdict = self.policy.check(load)
        reason = f"{name}: {kind}, p={p:.2f}; {verdict.text}"
        if not suits:
            return RouteDecision("normal", reason, probability=p)
        if not verdict.ok:
            return RouteDecision("normal", reason + " -> normal", probability=p)
        return RouteDecision("sot", reason, probability=p, max_points=verdict.max_points)


# --------------------------------------------------------------------------------------------------------
# Optional: the served model classifies the question itself
# --------------------------------------------------------------------------------------------------------


class LLMRouter:
    """Ask the engine's model which of three kinds a question is (the SoT paper's prompting router idea).

    ``A`` (independent points) suits SoT; ``B`` (points that build on each other) and ``C`` (no list at
    all) do not. The answer is constrained to one letter by a regex. Only worth it with a capable model;
    the trained router stays the default.

    ``probability`` is synchronous (the pipeline calls routers from a worker thread): it submits the
    request to the event loop the engine runs on, captured when the router is made inside that loop.
    """

    name = "router(llm)"
    threshold = 0.5

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop | None = None, timeout_s: float = 60.0):
        self.engine = engine
        self.timeout_s = timeout_s
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self.loop = loop
        self._n = 0

    async def aclassify(self, question: str) -> Literal["A", "B", "C"]:
        from sotrag.app.engine import GenerationRequest, SamplingOptions
        from sotrag.prompts.router import router_messages

        self._n += 1
        request = GenerationRequest(
            request_id=f"router-{id(self):x}-{self._n}",
            prompt=self.engine.render_chat(router_messages(question)),
            sampling=SamplingOptions(max_tokens=2, temperature=0.0, regex="[ABC]"),
        )
        text = ""
        async for delta in self.engine.generate(request):
            text += delta.text
        letter = text.strip()[:1].upper()
        return letter if letter in ("A", "B", "C") else "C"  # type: ignore[return-value]

    async def aprobability(self, question: str) -> float:
        return 1.0 if await self.aclassify(question) == "A" else 0.0

    def probability(self, question: str) -> float:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("LLMRouter.probability blocks: inside the event loop await aprobability()")
        if self.loop is None:
            raise RuntimeError("LLMRouter needs the engine's event loop: create it inside that loop")
        future = asyncio.run_coroutine_threadsafe(self.aprobability(question), self.loop)
        return future.result(timeout=self.timeout_s)


def make_router(
    kind: Literal["trained", "llm"] = "trained",
    *,
    engine: Engine | None = None,
    threshold: float | None = None,
    artifact: str | Path | None = None,
    policy: LoadPolicy | None = None,
) -> SoTRouter:
    """The router for auto mode: ``"trained"`` (default, fast, local) or ``"llm"`` (asks the engine)."""
    classifier: QuestionClassifier
    if kind == "trained":
        classifier = TrainedRouter(artifact=artifact, threshold=threshold)
    elif kind == "llm":
        if engine is None:
            raise ValueError('router="llm" needs the engine')
        classifier = LLMRouter(engine)
    else:
        raise ValueError(f"unknown router kind {kind!r} (trained or llm)")
    return SoTRouter(classifier, policy)


def router_from_config(config: RouterConfig, engine: Engine | None = None) -> SoTRouter:
    """The router ``Settings.router`` describes (``SOTRAG_ROUTER__KIND``, ``SOTRAG_ROUTER__THRESHOLD``, ...)."""
    policy = LoadPolicy(
        max_busy_fraction=config.max_busy_fraction,
        max_kv_cache_usage=config.max_kv_cache_usage,
        min_free_seqs=config.min_free_seqs,
    )
    return make_router(config.kind, engine=engine, threshold=config.threshold, artifact=config.artifact, policy=policy)
