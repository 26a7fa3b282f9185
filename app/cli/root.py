"""The ``sotrag`` command group: each concern keeps its commands in its own module, and they join here."""

from __future__ import annotations

import typer

from sotrag.app.cli import ask, router, serve
from sotrag.retrieval import cli as retrieval_cli

app = typer.Typer(
    name="sotrag",
    help="Answer questions over your documents, fast, with Skeleton-of-Thought parallel decoding on vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Keep ``sotrag`` a command group, so every command keeps its name (``sotrag ask ...``)."""


ask.register(app)
retrieval_cli.register(app)
serve.register(app)
router.register(app)


def main() -> None:
    app()
