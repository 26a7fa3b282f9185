"""Configuration, in one place, from code, environment (``SOTRAG_...``) or a ``.env`` file.

Nested fields use ``__`` in environment names: ``SOTRAG_ENGINE__MODEL=/models/qwen``,
``SOTRAG_SOT__EAGER=true``, ``SOTRAG_SAMPLING__TEMPERATURE=0.7``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sotrag.app.events import RequestedMode
from sotrag.retrieval.settings import RetrievalSettings

CPU_DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
GPU_DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
# The gpu preset's engine limits, sized for SoT (about 8 sequences per answer) by the GPU sweeps in
# docs/BENCHMARKS.md ("Engine limits": at 16/s and at a saturating 32/s). vLLM's generic ones are 128
# sequences and 2048 tokens a step.
GPU_MAX_NUM_SEQS = 256
GPU_MAX_BATCHED = 8192


DistributedBackend = Literal["mp", "ray", "uni", "external_launcher"]
# What a point's own search is (``per_point_query``): the question and the point's title, or the title alone.
PointQuery = Literal["question_title", "title"]


class FiniteModel(BaseModel):
    """Settings whose numbers are finite: ``inf`` or ``nan`` (from the environment, ``.env`` or a command-line
    option) is refused, as no limit, timeout or size means it."""

    model_config = ConfigDict(allow_inf_nan=False)


class EngineConfig(FiniteModel):
    """How to start vLLM. ``preset`` picks the default model and memory settings for a CPU or a GPU.

    Every number is range-checked here, so a bad value (``SOTRAG_ENGINE__TENSOR_PARALLEL_SIZE=0``, ``--max-num-seqs
    -1``) is one clear line before the engine takes half a minute to start, not a stack trace from inside vLLM.
    """

    preset: Literal["cpu", "gpu"] = "cpu"
    model: str | None = Field(default=None, description="hub id or local path; default depends on preset")
    tokenizer: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = Field(default=4096, ge=1, description="context length; None: the model's")
    gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0, description="share of GPU memory vLLM may use")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per model copy, within one node")
    pipeline_parallel_size: int = Field(default=1, ge=1, description="pipeline stages (across nodes with Ray)")
    data_parallel_size: int = Field(default=1, ge=1, description="model copies in this engine, requests spread")
    distributed_executor_backend: DistributedBackend | None = Field(
        default=None, description="mp (one node), ray (several nodes); None: vLLM chooses"
    )
    max_num_seqs: int | None = Field(default=None, ge=1, description="None: the preset's (cpu 64, gpu 256)")
    max_num_batched_tokens: int | None = Field(
        default=None, ge=256, description="tokens per engine step; None: the preset's (cpu vLLM's, gpu GPU_MAX_BATCHED)"
    )
    enable_chunked_prefill: bool | None = Field(default=None, description="None: the preset's (vLLM's default: on)")
    enable_prefix_caching: bool = True
    kv_cache_gib: float | None = Field(
        default=None,
        gt=0.0,
        description="KV-cache size in GiB; None: 4 GiB with the cpu preset, gpu_memory_utilization with gpu",
    )
    speculative_config: dict[str, Any] | None = Field(
        default=None, description='passed to vLLM as is, e.g. {"method": "ngram", "num_speculative_tokens": 4}'
    )
    load_format: str = "auto"
    enforce_eager: bool = False
    admit_points_together: bool = Field(
        default=True,
        description="in-process vLLM: when the engine is idle, hold its scheduler while one answer's point requests "
        "go in, so that one engine step prefills them all (they would otherwise start over several steps)",
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="any other AsyncEngineArgs field")
    # Remote engine: a non-empty ``urls`` drives running vLLM OpenAI servers instead of starting one in-process.
    urls: list[str] = Field(
        default_factory=list,
        description='base URLs of vLLM OpenAI servers, e.g. ["http://127.0.0.1:8001/v1"]; non-empty: remote engine',
    )
    api_key: str | None = Field(default=None, description="bearer token for the servers (remote engine)")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="remote engine: connecting to a server")
    read_timeout_s: float = Field(default=60.0, gt=0, description="remote engine: longest wait for the next chunk")
    connect_retries: int = Field(default=2, ge=0, description="remote engine: retries on connection errors only")
    poll_interval_s: float = Field(
        default=0.5, ge=0.2, description="remote engine: how often each server's /health and /metrics are read"
    )
    affinity_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
        description="remote engine: send each answer's affinity key in this HTTP header on all of its requests, "
        "for a router with session affinity by header (production-stack --routing-logic session --session-key "
        "NAME, llm-d's session-affinity scorer); None: no header",
    )
    remote_seeds: bool = Field(
        default=False,
        description="remote engine: forward a request's sampling seed to the servers. Off by default: a seed kills a "
        "vLLM CPU server with chunked prefill (its default), for every client; turn on only for GPU servers, or CPU "
        "servers started with --no-enable-chunked-prefill. Off, seeds are dropped (logged once)",
    )
    remote_tokenizer: Literal["auto", "server"] = Field(
        default="auto",
        description="remote engine: auto uses a local copy of the served model's tokenizer (engine.tokenizer or "
        "engine.model, never downloaded) when it matches the server, else the server's /tokenize; server: always it",
    )

    @property
    def remote(self) -> bool:
        return bool(self.urls)

    @field_validator("api_key")
    @classmethod
    def _engine_key_not_blank(cls, value: str | None) -> str | None:
        return None if value is None else check_secret(value, "engine.api_key")

    @model_validator(mode="after")
    def _extra_does_not_shadow(self) -> EngineConfig:
        # ``extra`` wins over the named fields when the engine args are built, which would bypass their checks.
        shadowed = sorted(set(self.extra) & set(type(self).model_fields))
        if shadowed:
            raise ValueError(f"set {', '.join(shadowed)} as engine option(s) of their own, not inside engine.extra")
        return self

    @property
    def resolved_kv_cache_bytes(self) -> int | None:
        """On CPU vLLM otherwise reserves gpu_memory_utilization of ALL memory, and refuses to start when
        other processes hold some of it."""
        gib = self.kv_cache_gib if self.kv_cache_gib is not None else (4.0 if self.preset == "cpu" else None)
        return None if gib is None else int(gib * 2**30)

    @property
    def resolved_max_num_seqs(self) -> int:
        if self.max_num_seqs is not None:
            return self.max_num_seqs
        return GPU_MAX_NUM_SEQS if self.preset == "gpu" else 64

    @property
    def resolved_max_num_batched_tokens(self) -> int | None:
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        return GPU_MAX_BATCHED if self.preset == "gpu" else None

    @property
    def resolved_model(self) -> str:
        if self.model:
            return self.model
        return GPU_DEFAULT_MODEL if self.preset == "gpu" else CPU_DEFAULT_MODEL


SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # the seeds vLLM takes (a signed 64-bit integer)


class SamplingConfig(FiniteModel):
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    # vLLM's range (its OpenAI protocol's int64); a larger one used to reach the engine and fail there.
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    skeleton_max_tokens: int = Field(default=200, ge=8)
    point_max_tokens: int = Field(default=128, ge=1)
    normal_max_tokens: int = Field(default=1024, ge=1)
    # Answer-shape controls for benchmarks (random-weight models never stop on their own).
    point_min_tokens: int = Field(default=0, ge=0)
    normal_min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    allowed_token_ids: list[int] | None = None
    stop: list[str] = Field(
        default_factory=list, max_length=4,
        description="stop strings of a normal answer (OpenAI's stop): it ends before the first one. SoT requests keep "
        "their own stops (the OpenAI route refuses stop with sotrag-sot)",
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="a normal answer must be JSON matching this schema (vLLM structured outputs; {\"type\": "
        "\"object\"} for any JSON object): OpenAI's response_format",
    )
    stream_interval: int = Field(
        default=1,
        ge=1,
        le=64,
        description="tokens per streamed delta of each point and of a normal answer (vLLM's stream_interval, per "
        "request): fewer deltas for this process's event loop, and for an OpenAI server fewer SSE chunks to parse. "
        "The skeleton always streams every token (the pipeline acts on its lines as they end). 1: every token",
    )


class SoTConfig(FiniteModel):
    """The Skeleton-of-Thought knobs."""

    guided_skeleton: bool = Field(
        default=False,
        description="regex-constrain the skeleton from the start (for weak models). Off by default: a guided "
        "request makes vLLM fill a grammar mask on its engine-core thread and defer sampling for the whole "
        "batch, so it slows every request in flight; the unguided skeleton is plain decoding",
    )
    skeleton_fallback: Literal["guided", "normal"] = Field(
        default="guided",
        description="when the unguided skeleton has fewer than fallback_min_points points: ask again with the "
        "regex guide (guided), or answer with normal decoding (normal)",
    )
    guided_regex: Literal["line", "word"] = Field(
        default="line",
        description="the guide's shape: line (k. then up to guided_line_chars of any text, cheap masks) or word "
        "(min_words..max_words bounded words, the old default, dearer masks)",
    )
    guided_line_chars: int = Field(default=80, ge=8, le=400)
    min_points: int = Field(default=3, ge=1, le=20)
    max_points: int = Field(default=10, ge=1, le=20)
    min_words: int = Field(default=3, ge=1)
    max_words: int = Field(default=8, ge=1)
    point_sentences: str = Field(default="1 to 2", description="length asked of each point")
    eager: bool = Field(default=False, description="expand each point as soon as its skeleton line is done")
    fallback_min_points: int = Field(default=2, ge=1, description="fewer usable points: normal decoding")

    @model_validator(mode="after")
    def _bounds(self) -> SoTConfig:
        if self.min_points > self.max_points:
            raise ValueError("sot.min_points must be <= sot.max_points")
        if self.min_words > self.max_words:
            raise ValueError("sot.min_words must be <= sot.max_words")
        return self


class RouterConfig(FiniteModel):
    """SoT-R for ``mode="auto"``: which router, its threshold, and when the engine is too busy for SoT."""

    kind: Literal["trained", "llm"] = Field(
        default="trained", description="trained (MiniLM head) or llm (asks the model)"
    )
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="P(suits SoT) needed; None: the artifact's"
    )
    artifact: str | None = Field(default=None, description="router .npz; None: the packaged one")
    max_busy_fraction: float = Field(default=0.75, gt=0.0, le=1.0, description="(running+waiting)/max_num_seqs limit")
    max_kv_cache_usage: float = Field(default=0.90, gt=0.0, le=1.0)
    min_free_seqs: int = Field(default=2, ge=1, description="free batch slots SoT needs")
    max_waiting: int = Field(default=1, ge=1, description="queued engine requests at which SoT is refused")
    max_itl_ratio: float = Field(
        default=2.5, ge=1.0, description="recent inter-token latency over the idle one at which SoT is refused"
    )
    resume_itl_ratio: float = Field(
        default=1.8, ge=1.0, description="hysteresis: after a refusal, SoT again only under this ITL ratio"
    )
    max_loop_lag_ms: float = Field(
        default=20.0, gt=0.0, description="this process's event-loop lag (median, last 0.5 s) at which SoT is refused"
    )
    resume_loop_lag_ms: float = Field(
        default=5.0, gt=0.0, description="hysteresis: after a refusal, SoT again only under this loop lag"
    )

    @model_validator(mode="after")
    def _resume_under_refuse(self) -> RouterConfig:
        if self.resume_itl_ratio > self.max_itl_ratio:
            raise ValueError("router.resume_itl_ratio must be <= router.max_itl_ratio")
        if self.resume_loop_lag_ms > self.max_loop_lag_ms:
            raise ValueError("router.resume_loop_lag_ms must be <= router.max_loop_lag_ms")
        return self


class VectorSearchConfig(FiniteModel):
    """Where dense search runs: ``faiss`` on the CPU (the default), or ``torch``: the embeddings on ``device``
    searched by the fused top-k kernel; vLLM's gpu_memory_utilization is then lowered by the index's share."""

    backend: Literal["faiss", "torch"] = "faiss"
    device: str = "cuda"
    storage: Literal["fp16", "int8"] = "fp16"


class LimitsConfig(FiniteModel):
    """Backpressure for the server, one limiter for REST, the OpenAI route and the UI alike.

    Past ``max_concurrent_answers`` an answer waits in a queue of ``max_queued_answers``; past that it is refused
    at once (429 with ``Retry-After``), so a burst costs the server nothing but the refusals.
    """

    max_concurrent_answers: int = Field(default=8, ge=1, description="answers generating at once")
    max_queued_answers: int = Field(default=32, ge=0, description="answers waiting for a slot; more: 429")
    queue_timeout_s: float = Field(default=60.0, gt=0, description="longest wait for a slot; then 429")
    answer_timeout_s: float = Field(
        default=300.0, gt=0, description="longest answer, from its start; then an error and every request aborted"
    )
    retry_after_s: int = Field(default=2, ge=1, description="the Retry-After sent with a 429")
    max_question_chars: int = Field(default=100_000, ge=1, description="checked before tokenizing")
    max_history_chars: int = Field(default=400_000, ge=0, description="all earlier turns together")
    max_tokens: int = Field(default=4096, ge=1, description="largest max_tokens a request may ask for")
    max_upload_mb: float = Field(default=20.0, gt=0, le=1_048_576, description="largest document upload, in MiB")
    max_body_mb: float = Field(
        default=8.0, gt=0, le=1_048_576,
        description="largest request body of every other route (JSON, the UI's calls), in MiB; "
        "counted while it arrives, so a larger one costs the server no memory"
    )


class ServerConfig(FiniteModel):
    """How ``sotrag serve`` behaves towards browsers and when its engine dies."""

    read_only: bool = Field(default=False, description="refuse document uploads and deletes (403)")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser; empty: CORS off"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values this server answers besides 127.0.0.1, localhost and [::1] (any port), "
        "e.g. [\"sotrag.example.com\", \"*.internal\"]; [\"*\"]: any (only behind a proxy that checks it). "
        "Others get 421: a page on another site cannot reach this server by rebinding its DNS name to it",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"https?://[^/\s*]+", value.strip().rstrip("/")):
                raise ValueError(f"server.cors_origins: {value!r} is not an origin like https://app.example.com")
        return [v.strip().rstrip("/") for v in values]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"\*|(\*\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?|\[[0-9A-Fa-f:.]+\]",
                                value.strip()):
                raise ValueError(
                    f"server.allowed_hosts: {value!r} is not a host name (sotrag.example.com, *.example.com, "
                    "[2001:db8::1] or *), without scheme or port"
                )
            if _public_wildcard(value.strip().lower().rstrip(".")):
                raise ValueError(
                    f"server.allowed_hosts: {value!r} allows every name under a public suffix (any site could "
                    "rebind its DNS name to this server): name your own domain, like *.example.com"
                )
        return [v.strip().lower().rstrip(".") for v in values]
    engine_death_grace_s: float = Field(
        default=5.0, ge=0, description="after the engine dies, report it for this long, then exit non-zero"
    )
    engine_nice: int | None = Field(
        default=None,
        ge=0,
        le=19,
        description="niceness added to the in-process engine's processes once started, so the server's event loop "
        "(probes, streams, refusals) is never starved by the engine's compute; None: 10 with the cpu preset, 0 with "
        "gpu (docs/RELIABILITY.md has the trade-off: faster probes, slower answers on a saturated CPU)",
    )
    require_auth: bool = Field(
        default=False,
        description="refuse to start without an api_key (deployments set it: a deleted key line is then an error, "
        "not an open server)",
    )


class Settings(BaseSettings):
    """Everything sotrag reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="SOTRAG_", env_nested_delimiter="__", env_file=".env", extra="ignore", populate_by_name=True,
        allow_inf_nan=False,
    )

    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    sot: SoTConfig = Field(default_factory=SoTConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    index_dir: str | None = Field(default=None, description="document index folder; None answers ungrounded")
    vector_search: VectorSearchConfig = Field(default_factory=VectorSearchConfig)
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings, description="embedding model and hybrid fusion (SOTRAG_RETRIEVAL__...)"
    )
    default_mode: RequestedMode = Field(
        default="auto",
        description="the decoding mode when a request names none, on every surface (REST, OpenAI route, UI, CLI, "
        "library): auto lets the router choose SoT where the question suits it and the engine has room, and normal "
        "decoding otherwise; sot or normal force one",
    )
    passages_k: int = Field(
        default=5,
        ge=0,
        le=50,
        validation_alias=AliasChoices("SOTRAG_PASSAGES_K", "SOTRAG_TOP_K"),
        description="passages retrieved per question (0: ungrounded). Not sampling's top_k (sampling.top_k). "
        "SOTRAG_TOP_K is the old name of SOTRAG_PASSAGES_K, still read",
    )
    per_point_retrieval: bool = Field(
        default=False, description="after the skeleton, retrieve again for each point (question + point title)"
    )
    per_point_k: int = Field(default=2, ge=1, le=10, description="extra passages per point")
    per_point_query: PointQuery = Field(
        default="question_title",
        description="what each point's search is: the question and the point's title, or the title alone "
        "(docs/service.md, Per-point grounding)",
    )
    context_share: float = Field(
        default=0.5, gt=0.0, le=0.9, description="share of the model's context that retrieved passages may fill"
    )
    api_key: SecretStr | None = Field(
        default=None, description="bearer token for the REST/OpenAI routes and the UI login; None: no key"
    )
    admin_api_key: SecretStr | None = Field(
        default=None, description="key the document write routes need (upload, delete); None: the api_key"
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """``Settings(top_k=3)``: the old name of ``passages_k`` (the environment's is the field's alias)."""
        if isinstance(data, dict) and "top_k" in data:
            data = dict(data)
            old = data.pop("top_k")
            data.setdefault("passages_k", old)
        return data

    @property
    def top_k(self) -> int:
        """The old name of ``passages_k`` (read-only)."""
        return self.passages_k

    @model_validator(mode="after")
    def _keys_together(self) -> Settings:
        problem = key_conflict(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    @field_validator("api_key", "admin_api_key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # An empty SecretStr is falsy: taken for "no key", it would open the server to anyone.
        if value is not None:
            check_secret(value.get_secret_value(), str(info.field_name))
        return value


# Single-label names that are private by convention or reservation (RFC 6761, RFC 6762, ICANN's .internal):
# ``*.internal`` names a private zone, ``*.com`` every .com site.
_PRIVATE_TLDS = frozenset({"internal", "local", "lan", "home", "localdomain", "localhost", "corp", "intranet",
                           "private", "test", "example", "invalid", "intra", "svc", "cluster"})
# Second-level labels of the public suffixes under country codes (co.uk, com.au, ac.jp, ...).
_PUBLIC_SECOND_LEVELS = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "gv", "mil",
                                   "nic", "ltd", "plc", "sch", "nhs", "police", "info", "biz", "nom", "gob"})


def _public_wildcard(host: str) -> bool:
    """``*.com`` or ``*.co.uk``: a wildcard over a public suffix (a short rule, no suffix list: a one-label suffix
    that is not a private-use name, or a common second level under a two-letter country code)."""
    if not host.startswith("*."):
        return False
    labels = host[2:].split(".")
    if len(labels) == 1:
        return labels[0] not in _PRIVATE_TLDS
    return len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _PUBLIC_SECOND_LEVELS


# Every secret (api_key, admin_api_key, engine.api_key), from every source (flag, key file, environment, .env,
# code), passes ``check_secret``. 16 characters: what ``openssl rand -hex 8`` gives, and more than anyone types
# by hand as a "test" key (docs/DEPLOY.md, Secrets).
MIN_KEY_CHARS = 16
# Lower-case, letters and digits only: "Change-Me", "YOUR_API_KEY_HERE" and "<your-key>" are placeholders too.
_PLACEHOLDERS = frozenset({
    "none", "null", "nil", "undefined", "empty", "false", "true", "changeme", "changeit", "replaceme", "password",
    "passwd", "secret", "token", "apikey", "key", "admin", "adminkey", "test", "testkey", "example", "sample",
    "default", "placeholder", "todo", "fixme", "xxx", "dummy", "unused",
})
_PLACEHOLDER_PARTS = ("changeme", "replaceme", "yourkey", "yourapikey", "yoursecret", "yourtoken", "placeholder",
                      "insertkey", "putkeyhere", "keyhere", "secrethere", "tokenhere")


def secret_problem(value: str) -> str | None:
    """Why ``value`` cannot be a key, in a few words after "KEY is" (None: it can). An HTTP header carries every
    key, so it must be printable ASCII (no client could send anything else); a blank, short or placeholder key
    would look like protection and be none."""
    if not value.strip():
        return "empty"
    if value != value.strip():
        return "surrounded by spaces"
    if not (value.isascii() and value.isprintable()):
        return "not printable ASCII (a character no HTTP client can send)"
    plain = re.sub(r"[^a-z0-9]", "", value.lower())
    if plain in _PLACEHOLDERS or any(part in plain for part in _PLACEHOLDER_PARTS):
        return f"a placeholder ({value[:40]!r})"
    if len(value) < MIN_KEY_CHARS:
        return f"shorter than {MIN_KEY_CHARS} characters (e.g. `openssl rand -hex 16` makes one)"
    if len(set(value)) < 5:
        return "too simple (fewer than 5 different characters)"
    return None


def check_secret(value: str, name: str) -> str:
    """``value`` if it can be a key; else ValueError naming ``name`` and why. The one check of every secret."""
    problem = secret_problem(value)
    if problem is not None:
        raise ValueError(f"{name} is {problem}: set a real key, or unset it for none")
    return value


def key_conflict(settings: Settings) -> str | None:
    """What is wrong with the keys taken together (None: nothing): checked once every source is in, so a key
    from ``serve --api-key-file`` counts for ``server.require_auth``."""
    api = settings.api_key.get_secret_value() if settings.api_key is not None else None
    admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key is not None else None
    if api is not None and api == admin:
        return "admin_api_key is the same as api_key: give document writes a key of their own, or no admin key"
    if settings.server.require_auth and api is None:
        return ("server.require_auth is on but no api_key is set (SOTRAG_API_KEY, serve --api-key-file or "
                "--api-key)")
    return None


