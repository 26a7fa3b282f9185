"""CLI commands of the retrieval side: ``ingest``, ``remove``, ``documents``, ``search``, ``eval-retrieval``.

``register(app)`` adds them to sotrag's typer app. Every expected failure (a missing, locked, damaged or
unwritable index, bad input) prints one ``error:`` line and exits 1; an unexpected one prints one line too,
and its traceback only with ``-v``. ``run_app`` adds, for every command of the app it runs: a usage error (exit
2) for an empty path or a number that is not finite, and ``error: interrupted`` (exit 130) on Ctrl-C.
``ingest`` exits 1 when any file failed (after its summary). Library
warnings (torch, transformers, pypdf) are hidden unless ``-v``. ``--json`` output is a stable contract:

* ``search --json``: ``[{"source", "heading", "score", "text", "chunk_id"}, ...]``
* ``eval-retrieval --json``: ``{"dense": {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"},
  "lexical": ..., "hybrid": ...}``
* ``ingest --json``: the ingest summary (files with status and reason, counts, timings).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_INDEX_DIR = ".sotrag/index"
IndexOpt = Annotated[
    Path, typer.Option("--index", "-i", envvar="SOTRAG_INDEX_DIR", help="index folder", show_default=True)
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="show library warnings and tracebacks")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def describe_error(exc: BaseException) -> str:
    """One line for any failure: the message of an error a user can act on, else its type and first line."""
    import sqlite3

    from sotrag.retrieval.errors import RetrievalError

    if isinstance(exc, RetrievalError):
        return str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        return f"the index store cannot be read ({exc}); remove the index folder and ingest again"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc).strip().splitlines()
    if isinstance(exc, ValueError) and text:
        return text[0]
    first = f": {text[0]}" if text else ""
    return f"unexpected {type(exc).__name__}{first} (run again with -v for the details)"


@contextmanager
def _user_errors(verbose: bool = False) -> Iterator[None]:
    """Every failure becomes one line on stderr and exit code 1; ``verbose`` keeps the traceback of an
    unexpected one (the errors a user can act on stay one line)."""
    from sotrag.retrieval.errors import RetrievalError

    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if verbose and not isinstance(exc, RetrievalError):
            raise
        raise _fail(describe_error(exc)) from None


def _parse_filters(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise _fail(f"bad filter {item!r}: use KEY=VALUE, e.g. source='tutorial/*'")
        out[key.strip()] = value.strip()
    return out


def _quiet_libraries(verbose: bool = False) -> None:
    """Library warnings and progress bars (torch, transformers, sentence-transformers, pypdf) only with -v."""
    if verbose:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("sentence_transformers", "transformers", "faiss", "pypdf", "torch", "langchain", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:
        pass


quiet_libraries = _quiet_libraries  # for the other command modules


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files and folders (recursive)")],
    index: IndexOpt = Path(DEFAULT_INDEX_DIR),
    include: Annotated[list[str] | None, typer.Option(help="glob of files to take, e.g. '*.md'")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="glob of files to leave out")] = None,
    prune: Annotated[bool, typer.Option(help="remove indexed files that are gone from these folders")] = False,
    index_type: Annotated[str | None, typer.Option(help="flat, hnsw, ivf or auto (new index: auto)")] = None,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            envvar="SOTRAG_RETRIEVAL__EMBEDDING_MODEL",
            help="sentence-transformers name or path (new index: all-MiniLM-L6-v2)",
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="embedding precision: auto, fp32 or bf16")] = "auto",
    max_file_mb: Annotated[
        float, typer.Option(min=0.001, max=1_048_576, help="skip files larger than this")
    ] = 50.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Add files to the index; unchanged files are skipped, changed files replace their old chunks.

    Exits 1 when any file failed (the others are indexed; the summary lists why each failed)."""
    _quiet_libraries(verbose)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sotrag.retrieval.index import DocumentIndex

    console = Console(stderr=True)
    with _user_errors(verbose):
        for p in paths:
            if not p.exists():
                raise _fail(f"path does not exist: {p}")
        idx = DocumentIndex.open(
            index,
            create=True,
            embedding_model=embedding_model,
            index_type=index_type,
            precision=precision,
            max_file_bytes=int(max_file_mb * 1024 * 1024),
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=as_json or (not console.is_terminal and not os.environ.get("SOTRAG_PROGRESS")),
        ) as bar:
            tasks: dict[str, Any] = {}
            labels = {"read": "reading files", "embed": "embedding chunks"}

            def progress(stage: str, advance: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
                bar.update(tasks[stage], advance=advance, total=total)

            summary = idx.ingest([str(p) for p in paths], include or (), exclude or (), prune, progress)
        idx.close()
    c = summary.counts
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        for f in summary.files:
            if f.status in ("skipped", "removed"):
                typer.echo(f"  {f.status:8} {f.source}: {f.reason}")
        typer.echo(
            f"{c['added']} added, {c['updated']} updated, {c['unchanged']} unchanged, {c['skipped']} skipped, "
            f"{c['failed']} failed, {c['removed']} removed; {summary.chunks_written} chunks written "
            f"({summary.chunks_embedded} embedded in {summary.embed_seconds:.1f}s, "
            f"{summary.chunks_cached} from cache); "
            f"{summary.total_seconds:.1f}s; index {index} ({summary.index_type})"
        )
    if c["failed"]:
        for f in summary.by_status("failed"):
            typer.echo(f"  failed   {f.source}: {f.reason}", err=True)
        raise _fail(f"{c['failed']} of {len(summary.files)} files failed (the others are indexed)")


def remove(
    source: Annotated[str, typer.Argument(help="source path as listed by `documents`, a glob, or a doc id")],
    index: IndexOpt = Path(DEFAULT_INDEX_DIR),
    verbose: VerboseOpt = False,
) -> None:
    """Remove a document (all its chunks) from the index."""
    _quiet_libraries(verbose)
    from sotrag.retrieval.index import DocumentIndex

    with _user_errors(verbose):
        idx = DocumentIndex.open(index)
        removed = idx.remove(source)
        idx.close()
    for d in removed:
        typer.echo(f"removed {d.source} ({d.chunks} chunks)")


def documents(
    index: IndexOpt = Path(DEFAULT_INDEX_DIR),
    as_json: Annotated[bool, typer.Option("--json")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the documents in the index."""
    _quiet_libraries(verbose)
    from sotrag.retrieval.index import DocumentIndex

    with _user_errors(verbose):
        idx = DocumentIndex.open(index)
        docs = idx.list_documents()
        idx.close()
    if as_json:
        typer.echo(json.dumps([d.to_dict() for d in docs], indent=2))
        return
    for d in docs:
        typer.echo(f"{d.doc_id}  {d.chunks:4d} chunks  {d.source}")
    typer.echo(f"{len(docs)} documents")


def search(
    query: Annotated[str, typer.Argument(help="what to look for")],
    k: Annotated[int, typer.Option("-k", min=1, max=10_000, help="number of chunks")] = 5,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="KEY=VALUE: source=GLOB, heading=GLOB, doc_id, kind")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="dense, lexical or hybrid (default: hybrid)")] = None,
    use_mmr: Annotated[bool, typer.Option("--mmr", help="diversify results (maximal marginal relevance)")] = False,
    index: IndexOpt = Path(DEFAULT_INDEX_DIR),
    as_json: Annotated[bool, typer.Option("--json", help="print [{source, heading, score, text, chunk_id}]")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Search the index; prints chunks with score, source and heading path."""
    _quiet_libraries(verbose)
    from sotrag.retrieval.index import DocumentIndex
    from sotrag.retrieval.settings import from_env

    filters = _parse_filters(filter_)
    with _user_errors(verbose):
        idx = DocumentIndex.open(index, search_config=from_env().search_config())
        passages = idx.search(query, k=k, filters=filters, mode=mode, use_mmr=use_mmr)
        idx.close()
    if as_json:
        rows = [
            {
                "source": p.source,
                "heading": p.heading,
                "score": p.score,
                "text": p.text,
                "chunk_id": p.chunk_id,
            }
            for p in passages
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not passages:
        typer.echo("no matching chunks")
    for n, p in enumerate(passages, start=1):
        pos = p.metadata.get("position", "?")
        typer.echo(f"[{n}] {p.score:.4f}  {p.source} #{pos}  {p.heading}")
        snippet = " ".join(p.text.split())
        typer.echo(f"    {snippet[:300]}{'...' if len(snippet) > 300 else ''}")


def eval_retrieval(
    file: Annotated[Path, typer.Argument(help='JSONL lines {"question": ..., "relevant": ["doc.md", ...]}')],
    index: IndexOpt = Path(DEFAULT_INDEX_DIR),
    modes: Annotated[str, typer.Option(help="comma-separated modes to evaluate")] = "dense,lexical,hybrid",
    as_json: Annotated[
        bool, typer.Option("--json", help='print {"dense": {...}, "lexical": {...}, "hybrid": {...}}')
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Document-level recall@1/5/10, MRR@10 and nDCG@10 of each search mode on a question set."""
    _quiet_libraries(verbose)
    from sotrag.retrieval.evaluation import evaluate, load_questions
    from sotrag.retrieval.index import DocumentIndex
    from sotrag.retrieval.settings import from_env

    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    if not wanted:
        raise _fail(f"--modes {modes!r} names no mode: give some of dense, lexical, hybrid", 2)
    with _user_errors(verbose):
        questions = load_questions(file)
        idx = DocumentIndex.open(index, search_config=from_env().search_config())
        results = {m: evaluate(idx, questions, m)["mean"] for m in wanted}
        idx.close()
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    keys = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]
    typer.echo(f"{len(questions)} questions, index {index}")
    typer.echo(f"{'mode':8} " + " ".join(f"{k:>9}" for k in keys))
    for m, r in results.items():
        typer.echo(f"{m:8} " + " ".join(f"{r[k]:9.3f}" for k in keys))


COMMANDS: dict[str, Callable[..., None]] = {
    "ingest": ingest,
    "remove": remove,
    "documents": documents,
    "search": search,
    "eval-retrieval": eval_retrieval,
}


def register(app: typer.Typer) -> None:
    """Add the retrieval commands to sotrag's CLI."""
    for name, fn in COMMANDS.items():
        app.command(name)(fn)


try:  # newer typer carries its own copy of click
    from typer._click.exceptions import BadParameter, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click.exceptions import BadParameter, NoArgsIsHelpError, UsageError  # type: ignore[assignment]

# Options that name a folder or file but are typed ``str`` (``serve --index``, ``ask --index``).
PATH_OPTION_NAMES = frozenset({"index", "index_dir"})


def _names_a_path(param: Any) -> bool:
    import typing
    from pathlib import PurePath

    def is_path(annotation: Any) -> bool:
        if isinstance(annotation, type) and issubclass(annotation, PurePath):
            return True
        return any(is_path(arg) for arg in typing.get_args(annotation))

    descriptor = getattr(param, "type_descriptor", None)
    return param.name in PATH_OPTION_NAMES or is_path(getattr(descriptor, "annotation", None))


def _names_a_float(param: Any) -> bool:
    import typing

    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation is float or float in typing.get_args(annotation)


def refuse_empty_paths(command: Any) -> Any:
    """Every path argument and option of ``command`` and its subcommands refuses an empty value with a usage
    error (exit 2): ``Path("")`` is ``.``, so ``ingest ""`` indexed the current folder and ``--index ""`` wrote an
    index there. Checked on the raw text, before typer turns it into a ``Path``. Every number option refuses
    ``nan`` and ``inf`` too (a range check lets ``nan`` through; no size, limit or weight means ``inf``)."""
    commands = [command]
    while commands:
        cmd = commands.pop()
        commands.extend(getattr(cmd, "commands", {}).values())  # a group (typer's is no click Group)
        for param in getattr(cmd, "params", ()):
            if _names_a_path(param) and not getattr(param, "_refuses_empty", False):
                param.process_value = _refusing_empty(param, param.process_value)
                param._refuses_empty = True
            if _names_a_float(param) and not getattr(param, "_refuses_inf_nan", False):
                param.process_value = _refusing_inf_nan(param, param.process_value)
                param._refuses_inf_nan = True
        callback = getattr(cmd, "callback", None)
        if callback is not None and not getattr(callback, "_reports_interrupt", False):
            cmd.callback = _reporting_interrupt(callback)
    return command


def _reporting_interrupt(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Ctrl-C in a command: one ``error: interrupted`` line and exit 130. Typer turns the KeyboardInterrupt into
    a silent ``Exit(130)`` before ``run_app`` could see it."""
    import functools

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(130) from None

    run._reports_interrupt = True  # type: ignore[attr-defined]
    return run


def _refusing_inf_nan(param: Any, process_value: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    import math

    def checked(ctx: Any, value: Any) -> Any:
        value = process_value(ctx, value)
        if isinstance(value, float) and not math.isfinite(value):
            raise BadParameter(f"must be a finite number, not {value}", ctx=ctx, param=param)
        return value

    return checked


def _refusing_empty(param: Any, process_value: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def checked(ctx: Any, value: Any) -> Any:
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            raise BadParameter("is empty: give a path", ctx=ctx, param=param)
        return process_value(ctx, value)

    return checked


def run_app(app: typer.Typer, prog_name: str = "sotrag") -> None:
    """Run a typer app so that NO failure shows a traceback unless ``-v``/``--verbose`` is on the command
    line: whatever a command did not turn into a one-line error itself is turned into one here."""
    verbose = any(a in ("-v", "--verbose") for a in sys.argv[1:])
    try:
        command = refuse_empty_paths(typer.main.get_command(app))
        code = command.main(prog_name=prog_name, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except NoArgsIsHelpError as exc:  # ``sotrag`` alone: the help, as click would show it
        typer.echo(exc.format_message())
        sys.exit(exc.exit_code)
    except UsageError as exc:  # a bad option or argument: one line, not click's framed box
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if verbose:
            raise
        typer.echo(f"error: {describe_error(exc)}", err=True)
        sys.exit(1)


def main() -> None:
    """Standalone entry (``python -m sotrag.retrieval.cli``) with just the retrieval commands."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
    register(app)
    run_app(app)


if __name__ == "__main__":
    main()
    sys.exit(0)
