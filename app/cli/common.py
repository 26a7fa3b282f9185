"""What every ``sotrag`` command shares: one-line errors, quiet engine logs, the option choices."""

from __future__ import annotations

import os
from enum import Enum
from typing import Any

import typer
from rich.console import Console

err_console = Console(stderr=True)


class ModeChoice(str, Enum):
    sot = "sot"
    normal = "normal"
    auto = "auto"


class PresetChoice(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def quiet_vllm(verbose: bool) -> None:
    """stdout is for the answer (and ``--json``): vLLM's logs go to stderr, and without ``-v`` only its errors;
    Python warnings (torch, transformers, pypdf, vLLM) are hidden too, here and in vLLM's worker processes."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if verbose:
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # inherited by the engine-core process
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings (NUMA binding, ...)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("vllm", "torch", "transformers", "sentence_transformers", "pypdf", "faiss", "langchain"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_engine_extra(extra: dict[str, Any], verbose: bool) -> dict[str, Any]:
    """vLLM's engine options for a quiet terminal: no weight-loading progress bar unless ``-v`` (vLLM passes
    its own ``disable=`` to tqdm, so TQDM_DISABLE cannot hide it). The user's own ``extra`` wins."""
    return dict(extra) if verbose else {"use_tqdm_on_load": False, **extra}
