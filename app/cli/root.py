"""The ``sotrag`` command group: each concern keeps its commands in its own module, and they join here."""

from __future__ import annotations

from typing import Annotated

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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"sotrag {version('sotrag')}")
        except PackageNotFoundError:  # a source tree without its metadata
            typer.echo("sotrag (version unknown: not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    _show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Keep ``sotrag`` a command group, so every command keeps its name (``sotrag ask ...``)."""


ask.register(app)
retrieval_cli.register(app)
serve.register(app)
router.register(app)


def main() -> None:
    """The ``sotrag`` script: no traceback for any failure unless ``-v`` (see ``run_app``)."""
    retrieval_cli.run_app(app)
