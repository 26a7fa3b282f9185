"""What every ``sotrag`` command shares: one-line errors, quiet engine logs, the option choices."""

from __future__ import annotations

import os
from enum import Enum

import typer
from rich.console import Console

from sotrag.app.config import EngineConfig, Settings

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
    """stdout is for the answer (and ``--json``): vLLM's logs go to stderr, and only warnings unless asked."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("TQDM_DISABLE", "1")


def engine_settings(settings: Settings, model: str | None, preset: str | None, urls: list[str] | None) -> EngineConfig:
    """The engine settings with the command line's ``--model``, ``--preset`` and ``--engine-url`` applied.
    With engine URLs, ``--model`` names the served model (default: the server's only one)."""
    from sotrag.app.engines.base import EngineError
    from sotrag.app.engines.remote_pool import split_url

    update: dict[str, object] = {k: v for k, v in {"model": model, "preset": preset}.items() if v is not None}
    if urls:
        update["urls"] = list(urls)
    cfg = settings.engine.model_copy(update=update)
    for url in cfg.urls:
        try:
            split_url(url)
        except EngineError as exc:
            raise fail(str(exc), 2) from None
    return cfg
