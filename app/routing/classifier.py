"""The trained SoT-R question classifier: MiniLM features + a trained head, and its artifact.

``TrainedRouter`` embeds the question with the same MiniLM the retriever uses (mean-pooled hidden states of
several layers, which carry more of the question's *form* than the final sentence embedding alone), and a head
trained on the LIMA router labels (an RBF SVM, ``heads.py``; older artifacts: logistic regression) gives
P(suits SoT). Only a question at or above an
explicit threshold goes to SoT: a list-unfriendly question forced into points costs answer quality, a missed
one only costs speed.

Routing sits on every ``mode="auto"`` request of a server that is busy serving, so the features come from a
small ONNX Runtime graph (``OnnxQuestionEncoder``): MiniLM cut after the last layer the router reads, the
pooling inside the graph, int8 dynamic quantization, ONE intra-op thread that never spins. It is built once
from the pip-packaged MiniLM weights at first use and cached on disk (``router_cache_dir()``). The torch
``QuestionEncoder`` stays as the fp32 reference (tests compare against it; ``encoder="torch-fp32"``
artifacts use it).

The trained head ships as ``app/routing/assets/router.npz`` (plain arrays plus a JSON header, loaded with
``allow_pickle=False``); ``sotrag train-router`` rebuilds it deterministically (``routing.training``), from
the same encoder that serves it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import threading
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from sotrag.app.engines.base import EngineLoad
from sotrag.app.routing.base import QuestionClassifier, RouteDecision
from sotrag.app.routing.heads import KERNEL, KernelHead, head_probabilities
from sotrag.app.routing.router import SoTRouter

ARTIFACT_FORMAT = "sotrag-router/3"
# /1: no "encoder" key, always torch-fp32; /2: no "head" key, always the logistic head
READABLE_FORMATS = ("sotrag-router/1", "sotrag-router/2", ARTIFACT_FORMAT)
DEFAULT_ARTIFACT = Path(__file__).parent / "assets" / "router.npz"
ENCODERS = ("onnx-int8", "onnx-fp32", "torch-fp32")
DEFAULT_ENCODER = "onnx-int8"
ONNX_GRAPH_VERSION = 1  # bump when the exported graph changes: it is part of the cache key


class RouterArtifactError(ValueError):
    """The router artifact is missing, unreadable, or made for another embedding model; user-facing."""


# --------------------------------------------------------------------------------------------------------
# The trained model: what the artifact holds
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterModel:
    """A head over standardized multi-layer MiniLM features: logistic regression (``coef``, ``intercept``) or,
    when ``kernel`` is set, an RBF SVM (``heads.KernelHead``; ``coef`` is then empty).

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
    encoder: str = "torch-fp32"  # which encoder made the features the head was fit on (one of ENCODERS)
    info: dict[str, Any] = field(default_factory=dict)  # training data hash, CV metrics, hyperparameters
    tail_tokens: int = 0  # of a question over max_length tokens, how many of its last ones are kept (question_ids)
    kernel: KernelHead | None = None  # the RBF SVM head; None: the logistic head

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    @property
    def head(self) -> str:
        return KERNEL if self.kernel is not None else "logistic"

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return head_probabilities(features, self.mean, self.scale, self.coef, self.intercept, self.kernel)

    def save(self, path: str | Path) -> Path:
        """Write the artifact (``.npz``: float32 arrays and a JSON header). Same model, same bytes."""
        path = Path(path)
        header = {
            "format": ARTIFACT_FORMAT,
            "embedding_model": self.embedding_model,
            "encoder": self.encoder,
            "layers": list(self.layers),
            "max_length": self.max_length,
            "tail_tokens": self.tail_tokens,
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "info": self.info,
            "head": self.head,
        }
        arrays = {
            "mean": self.mean.astype(np.float32),
            "scale": self.scale.astype(np.float32),
        }
        if self.kernel is None:
            arrays["coef"] = self.coef.astype(np.float32)
        else:
            k = self.kernel
            header |= {"kernel": {"intercept": k.intercept, "gamma": k.gamma, "platt": [k.platt_a, k.platt_b]}}
            arrays |= {"support": k.support.astype(np.float16), "dual": k.dual.astype(np.float32)}
        arrays = {"header": np.array(json.dumps(header, sort_keys=True)), **arrays}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # An .npz written by hand with fixed zip timestamps: the same model gives the same bytes
        # (np.savez stamps the current time). np.load reads it as usual.
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        try:
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
        except BaseException:  # nothing half-written stays behind
            with contextlib.suppress(OSError):
                if tmp.is_file():
                    tmp.unlink()
            raise
        return path

    @classmethod
    def load(cls, path: str | Path = DEFAULT_ARTIFACT) -> RouterModel:
        path = Path(path)
        if not path.is_file():
            raise RouterArtifactError(f"router artifact not found: {path} (run `sotrag train-router`)")
        try:
            return cls._read(path)
        except RouterArtifactError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, EOFError, zipfile.BadZipFile) \
                as exc:
            # a damaged file (empty, truncated, not a zip, a header of the wrong shape) is the artifact's error
            raise RouterArtifactError(f"cannot read router artifact {path}: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _read(cls, path: Path) -> RouterModel:
        kernel = None
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if not isinstance(header, dict):
                    raise RouterArtifactError(f"{path}: the header is not a JSON object")
                if header.get("format") not in READABLE_FORMATS:
                    raise RouterArtifactError(
                        f"{path} is not a {ARTIFACT_FORMAT} artifact (format={header.get('format')!r})"
                    )
                head = header.get("head", "logistic")  # absent before /3: the logistic head
                if head not in ("logistic", KERNEL):
                    raise RouterArtifactError(f"{path}: unknown head {head!r} (expected logistic or {KERNEL})")
                mean, scale = (np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale"))
                if head == KERNEL:
                    k = header["kernel"]
                    kernel = KernelHead(
                        data["support"], data["dual"], float(k["intercept"]), float(k["gamma"]), *map(float, k["platt"])
                    )
                    coef = np.zeros(0)
                else:
                    coef = np.asarray(data["coef"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, RouterArtifactError):
                raise
            raise RouterArtifactError(f"cannot read router artifact {path}: {exc}") from None
        encoder = str(header.get("encoder", "torch-fp32"))
        if encoder not in ENCODERS:
            raise RouterArtifactError(f"{path}: unknown encoder {encoder!r} (expected one of {', '.join(ENCODERS)})")
        width = kernel.support.shape[1:] if kernel is not None else coef.shape
        if not (mean.shape == scale.shape == width and mean.ndim == 1):
            raise RouterArtifactError(f"{path}: inconsistent array shapes")
        if kernel is not None and kernel.dual.shape != kernel.support.shape[:1]:
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
            encoder=encoder,
            info=header.get("info", {}),
            tail_tokens=int(header.get("tail_tokens", 0)),  # absent in older artifacts: head-only truncation
            kernel=kernel,
        )


# --------------------------------------------------------------------------------------------------------
# Features: multi-layer mean pooling over the shared MiniLM
# --------------------------------------------------------------------------------------------------------


def question_ids(tokenizer: Any, text: str, max_length: int, tail_tokens: int = 0) -> list[int]:
    """The encoder's input ids for one question: [CLS] content [SEP], at most ``max_length`` in all. A longer
    question keeps its first and its last ``tail_tokens`` content tokens.

    Why a bound: the encoder's cost grows with the tokens, and long questions (WizardLM's) made the whole-question
    router's p99 several times its target (``benchmarks/router_length.py``, ``benchmarks/results/router_length.json``).
    Why both ends: long questions often give their context first and the ask ("... list three ways to ...")
    last. The cut was chosen on LIMA's cross-validation (docs/router.md), where it did as well as the whole
    question."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    room = max_length - 2
    if len(ids) > room:
        tail = min(tail_tokens, room)
        ids = ids[: room - tail] + (ids[len(ids) - tail :] if tail else [])
    return [int(tokenizer.cls_token_id), *ids, int(tokenizer.sep_token_id)]


class QuestionEncoder:
    """Question -> concatenated, L2-normalized mean-pooled hidden states of chosen MiniLM layers.

    Uses the process-wide sentence-transformers model from ``load_sentence_transformer`` (shared with
    retrieval; read-only here), and runs its underlying BERT once per batch with all hidden states.
    """

    def __init__(self, model_name: str, layers: Sequence[int], max_length: int, tail_tokens: int = 0) -> None:
        from sotrag.retrieval.embedder import load_sentence_transformer

        st = load_sentence_transformer(model_name)
        self.model_name = model_name
        self.layers = tuple(layers)
        self.max_length = max_length
        self.tail_tokens = tail_tokens
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
                ids = [
                    question_ids(self._tokenizer, text, self.max_length, self.tail_tokens)
                    for text in texts[start : start + batch_size]
                ]
                batch = self._tokenizer.pad({"input_ids": ids}, return_tensors="pt")
                hidden = self._bert(**batch, output_hidden_states=True).hidden_states
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
                pooled = [
                    torch.nn.functional.normalize((hidden[i] * mask).sum(1) / mask.sum(1), dim=-1) for i in self.layers
                ]
                out.append(torch.cat(pooled, dim=-1).to(torch.float64).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))


class Encoder(Protocol):
    """What the router needs from an encoder: question texts -> feature rows (float64)."""

    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def router_cache_dir() -> Path:
    """Where built router encoders are cached: ``$SOTRAG_CACHE_DIR/router``, else ``~/.cache/sotrag/router``."""
    root = os.environ.get("SOTRAG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sotrag"
    )
    return Path(root) / "router"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def _onnx_cache_key(model_name: str, layers: Sequence[int], quantize: bool) -> str:
    """Everything the built graph depends on: the weights (by name, size, mtime), layers, the exporter and
    quantizer versions. A change of any of them builds a new file instead of reusing a stale one."""
    from sotrag.retrieval.embedder import resolve_embedding_model

    resolved = Path(resolve_embedding_model(model_name))
    weights = []
    if resolved.is_dir():
        for f in sorted(resolved.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json"):
                st = f.stat()
                weights.append([f.name, st.st_size, st.st_mtime_ns])
    spec = {
        "graph": ONNX_GRAPH_VERSION,
        "model": str(resolved),
        "weights": weights,
        "layers": list(layers),
        "quantize": "int8-dynamic" if quantize else "fp32",
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_onnx_encoder(
    model_name: str, layers: Sequence[int], *, quantize: bool = True, cache_dir: Path | None = None
) -> Path:
    """The router's ONNX graph for ``model_name``/``layers``, exported once and cached (returns its path).

    The graph is MiniLM cut after ``max(layers)`` (later layers would be computed for nothing) with the
    router's pooling inside: input ids + attention mask -> concatenated L2-normalized mean-pooled hidden
    states of ``layers``. With ``quantize``, MatMul and embedding weights become int8 (onnxruntime
    ``quantize_dynamic``; activations are quantized per call, so feed ONE question at a time: padding
    would change the activation scale).
    """
    cache_dir = cache_dir or router_cache_dir()
    kind = "int8" if quantize else "fp32"
    path = cache_dir / f"minilm-router-{kind}-{_onnx_cache_key(model_name, layers, quantize)}.onnx"
    if path.is_file():
        return path
    import copy

    import torch

    from sotrag.retrieval.embedder import load_sentence_transformer

    st = load_sentence_transformer(model_name)
    bert: Any = copy.deepcopy(cast(Any, st[0].auto_model)).eval()
    keep = max(layers)
    if min(layers) < 0 or keep > len(bert.encoder.layer):
        raise RouterArtifactError(f"layers {tuple(layers)} do not exist in {model_name}")
    bert.encoder.layer = bert.encoder.layer[:keep]
    bert.config.num_hidden_layers = keep
    chosen = tuple(layers)

    class PooledLayers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
                output_hidden_states=True,
            ).hidden_states
            mask = attention_mask.unsqueeze(-1).to(hidden[0].dtype)
            pooled = [torch.nn.functional.normalize((hidden[i] * mask).sum(1) / mask.sum(1), dim=-1) for i in chosen]
            return torch.cat(pooled, dim=-1)

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    fp32 = tmp.with_suffix(".fp32.tmp")
    sample = st.tokenizer(["What are some tips to sleep better?"], return_tensors="pt")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(
                PooledLayers().eval(),
                (sample["input_ids"], sample["attention_mask"]),
                str(fp32 if quantize else tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["features"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
                opset_version=17,
                dynamo=False,
            )
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, per_channel=QUANT_PER_CHANNEL)
        tmp.replace(path)  # atomic: a concurrent builder writes the same bytes under its own tmp name
    finally:
        for leftover in (tmp, fp32):
            leftover.unlink(missing_ok=True)
    return path


QUANT_PER_CHANNEL = True  # per output channel int8 weights: closer to fp32 than per tensor (LIMA CV, docs)


class OnnxQuestionEncoder:
    """The router's fast encoder: the cached ONNX graph of ``build_onnx_encoder`` on ONNX Runtime.

    One question per call (the int8 graph quantizes activations per call), ``threads`` intra-op threads
    (default 1: routing is one short sequence, and more threads only fight the server's own work for the
    cores), no spin-waiting. The session is its own thread pool: ``torch.set_num_threads`` is untouched.
    """

    def __init__(
        self,
        model_name: str,
        layers: Sequence[int],
        max_length: int,
        *,
        tail_tokens: int = 0,
        quantize: bool = True,
        threads: int = 1,
        cache_dir: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from sotrag.retrieval.embedder import resolve_embedding_model

        self.model_name = model_name
        self.layers = tuple(layers)
        self.max_length = max_length
        self.tail_tokens = tail_tokens
        self.path = build_onnx_encoder(model_name, self.layers, quantize=quantize, cache_dir=cache_dir)
        self._tokenizer: Any = AutoTokenizer.from_pretrained(resolve_embedding_model(model_name))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session: Any = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self._session.get_outputs()[0].shape[-1] or 0) or self.encode(["dim"]).shape[1]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            ids = np.array([question_ids(self._tokenizer, text, self.max_length, self.tail_tokens)], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            rows.append(self._session.run(None, feed)[0][0])
        return np.stack(rows).astype(np.float64) if rows else np.zeros((0, self.dim))


def make_encoder(
    kind: str, model_name: str, layers: Sequence[int], max_length: int, *, tail_tokens: int = 0, threads: int = 1
) -> Encoder:
    """The encoder named by an artifact's ``encoder`` field."""
    if kind == "torch-fp32":
        return QuestionEncoder(model_name, layers, max_length, tail_tokens)
    if kind in ("onnx-int8", "onnx-fp32"):
        return OnnxQuestionEncoder(
            model_name, layers, max_length, tail_tokens=tail_tokens, quantize=kind == "onnx-int8", threads=threads
        )
    raise RouterArtifactError(f"unknown router encoder {kind!r} (expected one of {', '.join(ENCODERS)})")


# --------------------------------------------------------------------------------------------------------
# Classifiers: P(suits SoT) for a question
# --------------------------------------------------------------------------------------------------------

class TrainedRouter(QuestionClassifier):
    """The trained router: MiniLM features + a trained head (RBF SVM or logistic), thresholded. Loads the shipped
    artifact."""

    name = "router"

    def __init__(
        self,
        model: RouterModel | None = None,
        *,
        artifact: str | Path | None = None,
        threshold: float | None = None,
        threads: int = 1,
    ) -> None:
        self.model = model or RouterModel.load(artifact or DEFAULT_ARTIFACT)
        self.threads = threads  # intra-op threads of an ONNX encoder
        self.threshold = self.model.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"router threshold must be in [0, 1], got {self.threshold}")
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the encoder now (its first use in a process builds or loads the ONNX graph: seconds of CPU), so
        the first ``mode="auto"`` answer does not pay for it. A server calls this while it starts."""
        _ = self.encoder

    @property
    def encoder(self) -> Encoder:
        with self._lock:  # route() runs in worker threads: load the embedder once
            if self._encoder is None:
                m = self.model
                enc = make_encoder(
                    m.encoder, m.embedding_model, m.layers, m.max_length, tail_tokens=m.tail_tokens,
                    threads=self.threads,
                )
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

