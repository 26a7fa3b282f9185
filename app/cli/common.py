"""What every ``sotrag`` command shares: one-line errors, quiet engine logs, the option choices."""

from __future__ import annotations

import os
from enum import Enum

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
    """stdout is for the answer (and ``--json``): vLLM's logs go to stderr, and only warnings unless asked."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("TQDM_DISABLE", "1")
