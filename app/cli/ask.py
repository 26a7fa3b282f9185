"""``sotrag ask``: one answer in the terminal.

``sotrag ask "question"`` streams the skeleton, then every point as it fills in, then the sources and a stats
table; ``--json`` prints one JSON object (the ``AnswerResult`` contract) when the answer is done. Errors are
one line on stderr and a non-zero exit: 2 for bad input, 1 when the engine cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

from sotrag.app.cli.common import (
    BackendOption,
    DataParallelOption,
    ModeChoice,
    PipelineParallelOption,
    PresetChoice,
    TensorParallelOption,
    engine_settings,
    fail,
    load_settings,
    problem,
    quiet_vllm,
    with_options,
)
from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.base import EngineError, EngineRejected
from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    Event,
    PointDone,
    RouteEvent,
    SkeletonRetry,
    Source,
    SourcesEvent,
    stats_rows,
)
from sotrag.app.fold import AnswerSoFar
from sotrag.app.request import (
    AnswerRequest,
    InvalidQuestion,
    ValidatedRequest,
    check_encodable,
    non_empty,
    validate_request,
)
from sotrag.retrieval.errors import RetrievalError


def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    mode: Annotated[
        ModeChoice | None,
        typer.Option(help="sot, normal, or auto (router decides); default: the default_mode setting (auto)"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="hub id or local model folder")] = None,
    preset: Annotated[PresetChoice | None, typer.Option(help="cpu or gpu defaults")] = None,
    index: Annotated[str | None, typer.Option(help="document index folder (grounds the answer)")] = None,
    top_k: Annotated[int | None, typer.Option(help="passages to retrieve")] = None,
    eager: Annotated[bool, typer.Option(help="expand points while the skeleton is still being written")] = False,
    max_points: Annotated[int | None, typer.Option(help="most points in the skeleton")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    tensor_parallel_size: TensorParallelOption = None,
    pipeline_parallel_size: PipelineParallelOption = None,
    data_parallel_size: DataParallelOption = None,
    distributed_executor_backend: BackendOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object when done")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the engine's logs")] = False,
    engine_url: Annotated[
        list[str] | None,
        typer.Option("--engine-url", help="a running vLLM OpenAI server (…/v1) instead of starting one; repeatable"),
    ] = None,
) -> None:
    """Answer QUESTION, streaming the skeleton and the points as they are written."""
    try:
        check_encodable(question, "the question", from_bytes=True)  # argv bytes that are not UTF-8
        non_empty(question)  # before anything loads: an empty question is one line at once
    except InvalidQuestion as exc:
        raise fail(str(exc), 2) from None
    quiet_vllm(verbose)
    settings = load_settings()
    engine_cfg = engine_settings(
        settings,
        urls=engine_url,
        verbose=verbose,
        model=model,
        preset=preset and preset.value,
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        data_parallel_size=data_parallel_size,
        distributed_executor_backend=distributed_executor_backend,
    )
    sot_cfg = settings.sot.model_copy(update={"eager": eager or settings.sot.eager})
    if max_points is not None:
        if max_points < 1:
            raise fail("--max-points must be at least 1", 2)
        sot_cfg = sot_cfg.model_copy(
            update={"max_points": max_points, "min_points": min(sot_cfg.min_points, max_points)}
        )
    sampling = with_options(settings.sampling, temperature=temperature, seed=seed)
    request = _request(question, mode, top_k, sampling, sot_cfg)  # --top-k -3 is one line, before any work
    settings = settings.model_copy(update={"engine": engine_cfg, "index_dir": index or settings.index_dir})
    try:
        result = asyncio.run(_ask(settings, request, json_out))
    except InvalidQuestion as exc:
        raise fail(str(exc), 2) from None
    except RetrievalError as exc:
        raise fail(str(exc), 2) from None
    except EngineError as exc:  # a server that refused one of the request's values: bad input (2), else 1
        raise fail(str(exc), 2 if isinstance(exc, EngineRejected) else 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    if json_out:
        sys.stdout.write(result.model_dump_json() + "\n")


def _request(
    question: str, mode: ModeChoice | None, top_k: int | None, sampling: SamplingConfig, sot: SoTConfig
) -> AnswerRequest:
    """The command line's answer request: its options over the settings'."""
    try:
        return AnswerRequest(
            question=question, mode=mode.value if mode else None, passages_k=top_k, sampling=sampling, sot=sot
        )
    except ValidationError as exc:  # only --top-k can be out of range here: the rest came validated
        raise fail("; ".join(f"--top-k: {problem(err)}" for err in exc.errors()), 2) from None


async def _ask(settings: Settings, request: AnswerRequest, json_out: bool) -> AnswerResult:
    from sotrag.app.factory import create_pipeline

    validated = await precheck_question(settings, request)
    pipeline = await create_pipeline(settings)
    try:
        validated = validated or await pipeline.validate(request)  # bad input fails before any generation
        view = None if json_out else AnswerView(Console())
        result: AnswerResult | None = None
        with view.live() if view else contextlib.nullcontext():
            async for event in pipeline.stream(validated):
                if view:
                    view.update(event)
                if isinstance(event, AnswerDone):
                    result = event.result
        assert result is not None
        if view:
            view.finish()
            view.console.print(stats_table(result))
        return result
    finally:
        await pipeline.engine.aclose()


async def precheck_question(settings: Settings, request: AnswerRequest) -> ValidatedRequest | None:
    """Check the request BEFORE the engine takes its half a minute to start: the model's tokenizer and context
    length are enough. The check it returns is the answer's one validation (the pipeline runs it as it is);
    None where only the engine can tell (a remote server, dummy weights)."""
    from transformers import AutoConfig, AutoTokenizer

    from sotrag.app.engines.model_source import resolve_model

    cfg = settings.engine
    if cfg.load_format == "dummy" or cfg.remote:  # remote: the server's tokenizer checks it (pipeline.validate)
        return None
    model_path = resolve_model(cfg.resolved_model)
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or model_path)
    limit = cfg.max_model_len or int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 0))
    if not limit:
        return None

    async def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return await validate_request(request, settings, count, limit)


_NOTE_PREFIX: dict[type, str] = {SkeletonRetry: "skeleton retry: "}


class AnswerView:
    """What the terminal shows while an answer streams: skeleton first, then every point growing in place.

    A live region can only redraw what is still on the screen, so an answer taller than the terminal would be
    drawn again and again. Hence: finished parts are printed once, above the live region, in reading order
    (point 1 as soon as it is done, point 2 once it and point 1 are, ...; in normal mode every finished line),
    and the live region holds only what is still being written, cut to its last lines that fit the terminal.
    """

    def __init__(self, console: Console, auto_refresh: bool = True) -> None:
        self.console = console
        self.auto_refresh = auto_refresh
        self.answer = AnswerSoFar()  # the shared fold: what the answer is so far
        self._printed_points: set[int] = set()
        self._printed_normal = 0  # characters of the normal answer printed above the live region
        self._live: Live | None = None

    def live(self) -> Live:
        self._live = Live(
            self.render(),
            console=self.console,
            refresh_per_second=12,
            auto_refresh=self.auto_refresh,
            transient=True,  # what it shows at the end is printed for good by finish()
            vertical_overflow="crop",  # never needed: render() already fits the terminal
        )
        return self._live

    def update(self, event: Event) -> None:
        answer = self.answer
        if answer.feed(event):  # a skeleton retry or a fallback: its reason, and the points start over
            self._print(Text(_NOTE_PREFIX.get(type(event), "") + answer.notes[-1], style="dim"))
            self._printed_points.clear()
        elif isinstance(event, SourcesEvent):
            self._print(Text(f"{len(event.sources)} passages retrieved", style="dim"))
        elif isinstance(event, RouteEvent):
            self._print(Text(f"route: {event.mode} ({event.reason})", style="dim"))
        elif isinstance(event, PointDone):
            self._print_finished_points()
        elif isinstance(event, AnswerDelta):
            end = answer.normal.rfind("\n") + 1
            if end > self._printed_normal:
                self._print(Text(answer.normal[self._printed_normal : end - 1]))
                self._printed_normal = end
        if self._live is not None:
            self._live.update(self.render(), refresh=not self.auto_refresh)

    def _print(self, renderable: RenderableType) -> None:
        """Print for good, above the live region (rich's Live keeps itself below what is printed)."""
        (self._live.console if self._live is not None else self.console).print(renderable)

    def _point(self, index: int) -> Text:
        finished = index in self.answer.done
        line = Text("✓ " if finished else "… ", style="green" if finished else "yellow")
        line.append(f"{index}. {self.answer.titles[index]}", style="bold")
        line.append(self.answer.texts.get(index, ""))
        return line

    def _print_finished_points(self) -> None:
        if not self.answer.skeleton_titles:
            return  # until the skeleton is final a point can still be withdrawn: nothing is printed for good
        for index in sorted(self.answer.titles):
            if index in self._printed_points:
                continue
            if index not in self.answer.done:
                return  # reading order: a later point waits for this one
            self._print(self._point(index))
            cited = self.answer.citations.get(index)
            if cited:
                self._print(Text("   sources: " + "; ".join(cited_label(c) for c in cited), style="dim"))
            self._printed_points.add(index)

    def _pending(self) -> list[Text]:
        a = self.answer
        parts = [self._point(i) for i in sorted(a.titles) if i not in self._printed_points]
        if not a.titles and a.skeleton and not a.normal:
            parts.append(Text("skeleton\n", style="dim") + Text(a.skeleton, style="bold"))
        if a.normal[self._printed_normal :]:
            parts.append(Text(a.normal[self._printed_normal :]))
        return parts

    def render(self) -> RenderableType:
        """What is still being written, cut to the last lines that fit the terminal."""
        room = max(3, self.console.size.height - 2)
        lines = self.console.render_lines(Group(*self._pending()), self.console.options, pad=False)
        segments: list[Segment] = []
        for line in lines[-room:]:
            segments.extend(line)
            segments.append(Segment.line())
        return Segments(segments[:-1])

    def finish(self) -> None:
        """After the live region is gone: print what it still held (in full), then the sources."""
        self._print_finished_points()
        for part in self._pending():
            self.console.print(part)
        self._printed_points.update(self.answer.titles)
        self._printed_normal = len(self.answer.normal)
        if self.answer.sources:
            self.console.print(sources_table(self.answer.sources))


def cited_label(source: Source) -> str:
    """``[n] file > heading, p. 3``: one passage a point cites."""
    where = f"{source.source} > {source.heading}" if source.heading else source.source
    return f"[{source.n}] {where}" + (f", p. {source.page}" if source.page else "")


def sources_table(sources: list[Source]) -> Table:
    table = Table(title="sources", show_header=False, title_justify="left", box=None, padding=(0, 1))
    for s in sources:
        where = f"{s.source} > {s.heading}" if s.heading else s.source
        table.add_row(Text(f"[{s.n}]"), Text(where), Text(f"{s.score:.3f}"))
    return table


def stats_table(result: AnswerResult) -> Table:
    table = Table(title="latency", show_header=False, title_justify="left")
    for name, value in stats_rows(result):
        table.add_row(name, value)
    return table


def register(app: typer.Typer) -> None:
    """Add ``ask`` to sotrag's command line."""
    app.command()(ask)
