"""sotrag: question answering over your own documents, fast, by Skeleton-of-Thought parallel decoding.

    from sotrag import SoTRAG
    with SoTRAG(model="/models/Qwen2.5-0.5B-Instruct") as qa:
        print(qa.answer("How do I sleep better?").answer)

Names are imported lazily, so ``import sotrag`` stays cheap (no vLLM, LangChain or FAISS until used).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SoTRAG": "sotrag.app.client",
    "ClientClosed": "sotrag.app.client",
    "answer": "sotrag.app.client",
    "SoTPipeline": "sotrag.app.pipeline",
    "InvalidQuestion": "sotrag.app.pipeline",
    "Settings": "sotrag.app.config",
    "EngineConfig": "sotrag.app.config",
    "SamplingConfig": "sotrag.app.config",
    "SoTConfig": "sotrag.app.config",
    "AnswerResult": "sotrag.app.events",
    "VLLMEngine": "sotrag.app.engines.vllm",
    "SoTRunnable": "sotrag.app.runnable",
}

__all__ = [
    "AnswerResult",
    "ClientClosed",
    "EngineConfig",
    "InvalidQuestion",
    "SamplingConfig",
    "Settings",
    "SoTConfig",
    "SoTPipeline",
    "SoTRAG",
    "SoTRunnable",
    "VLLMEngine",
    "__version__",
    "answer",
]

if TYPE_CHECKING:
    from sotrag.app.client import ClientClosed, SoTRAG, answer
    from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
    from sotrag.app.engines.vllm import VLLMEngine
    from sotrag.app.events import AnswerResult
    from sotrag.app.pipeline import InvalidQuestion, SoTPipeline
    from sotrag.app.runnable import SoTRunnable


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sotrag' has no attribute {name!r}")
