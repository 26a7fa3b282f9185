"""Find model weights before vLLM is asked to load them.

vLLM (through transformers) retries an unreachable hub for about a minute before failing with a long
traceback. Resolving the model first (local folder, then the hub cache, then a quick reachability probe)
turns that into one clear line, at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from sotrag.app.engines.base import EngineError

_HINT = "pass --model PATH (or set SOTRAG_ENGINE__MODEL) to a local model folder"


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep + os.sep in name


def resolve_model(name: str, *, probe_timeout_s: float = 10.0) -> str:
    """Return a local folder for ``name`` (a path or a hub id), downloading it only when the hub answers.

    Raises ``EngineError`` with a one-line, user-facing message when the model cannot be had.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EngineError(f"{name} has no config.json, so it is not a model folder; {_HINT}")
        return str(path.resolve())
    if _looks_like_path(name):
        raise EngineError(f"model folder {name} does not exist; {_HINT}")

    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached: try the hub below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise EngineError(f"model {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {_HINT}")

    from huggingface_hub import model_info

    try:
        model_info(name, timeout=probe_timeout_s)
    except Exception as exc:
        reason = type(exc).__name__
        raise EngineError(
            f"model {name} is not cached here and the Hugging Face hub is unreachable ({reason}); {_HINT}"
        ) from None
    try:
        return snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"])
    except Exception as exc:
        raise EngineError(f"could not download model {name} ({type(exc).__name__}: {exc}); {_HINT}") from None
