"""``sotrag ask``: one answer in the terminal.

``sotrag ask "question"`` streams the skeleton, then every point as it fills in, then a stats table;
``--json`` prints one JSON object (the ``AnswerResult`` contract) when the answer is done. Errors are one
line on stderr and a non-zero exit: 2 for bad input, 1 when the engine cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sotrag.app.cli.common import ModeChoice, PresetChoice, fail, quiet_vllm
from sotrag.app.config import Settings
from sotrag.app.engines.base import EngineError
from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    Event,
    FallbackEvent,
    PointDelta,
    PointDone,
    PointStarted,
    RequestedMode,
    RouteEvent,
    SkeletonDelta,
    SkeletonRetry,
    SourcesEvent,
    stats_rows,
)
from sotrag.app.pipeline import InvalidQuestion, check_question
from sotrag.retrieval.errors import RetrievalError


def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    mode: Annotated[ModeChoice, typer.Option(help="sot, normal, or auto (router decides)")] = ModeChoice.sot,
    model: Annotated[str | None, typer.Option(help="hub id or local model folder")] = None,
    preset: Annotated[PresetChoice | None, typer.Option(help="cpu or gpu defaults")] = None,
    index: Annotated[str | None, typer.Option(help="document index folder (grounds the answer)")] = None,
    top_k: Annotated[int | None, typer.Option(help="passages to retrieve")] = None,
    eager: Annotated[bool, typer.Option(help="expand points while the skeleton is still being written")] = False,
    max_points: Annotated[int | None, typer.Option(help="most points in the skeleton")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object when done")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the engine's logs")] = False,
) -> None:
    """Answer QUESTION, streaming the skeleton and the points as they are written."""
    if not question.strip():
        raise fail("the question is empty", 2)
    quiet_vllm(verbose)
    settings = Settings()
    engine_cfg = settings.engine.model_copy(
        update={k: v for k, v in {"model": model, "preset": preset and preset.value}.items() if v is not None}
    )
    sot_cfg = settings.sot.model_copy(update={"eager": eager or settings.sot.eager})
    if max_points is not None:
        if max_points < 1:
            raise fail("--max-points must be at least 1", 2)
        sot_cfg = sot_cfg.model_copy(
            update={"max_points": max_points, "min_points": min(sot_cfg.min_points, max_points)}
        )
    sampling = settings.sampling.model_copy(
        update={k: v for k, v in {"temperature": temperature, "seed": seed}.items() if v is not None}
    )
    settings = settings.model_copy(
        update={
            "engine": engine_cfg,
            "sot": sot_cfg,
            "sampling": sampling,
            "index_dir": index or settings.index_dir,
            "top_k": settings.top_k if top_k is None else top_k,
        }
    )
    try:
        result = asyncio.run(_ask(settings, question, mode.value, json_out))
    except InvalidQuestion as exc:
        raise fail(str(exc), 2) from None
    except RetrievalError as exc:
        raise fail(str(exc), 2) from None
    except EngineError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    if json_out:
        sys.stdout.write(result.model_dump_json() + "\n")


async def _ask(settings: Settings, question: str, mode: RequestedMode, json_out: bool) -> AnswerResult:
    from sotrag.app.factory import create_pipeline

    precheck_question(settings, question)
    pipeline = await create_pipeline(settings)
    try:
        pipeline.validate(question)  # bad input fails before any generation
        view = None if json_out else AnswerView(Console())
        result: AnswerResult | None = None
        with view.live() if view else contextlib.nullcontext():
            async for event in pipeline.stream(question, mode=mode):
                if view:
                    view.update(event)
                if isinstance(event, AnswerDone):
                    result = event.result
        assert result is not None
        if view:
            view.console.print()  # the live view can leave the cursor at the end of its last line
            view.console.print(stats_table(result))
        return result
    finally:
        await pipeline.engine.aclose()


def precheck_question(settings: Settings, question: str) -> None:
    """Reject a question that cannot fit BEFORE the engine takes its half a minute to start: the tokenizer
    and the model's context length are enough."""
    from transformers import AutoConfig, AutoTokenizer

    from sotrag.app.engines.model_source import resolve_model

    cfg = settings.engine
    if cfg.load_format == "dummy":
        return
    model_path = resolve_model(cfg.resolved_model)
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or model_path)
    limit = cfg.max_model_len or int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 0))
    if limit:
        check_question(question, lambda text: len(tokenizer.encode(text, add_special_tokens=False)), limit)


class AnswerView:
    """What the terminal shows while an answer streams: skeleton first, then every point growing in place."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.skeleton = ""
        self.titles: dict[int, str] = {}
        self.texts: dict[int, str] = {}
        self.done: set[int] = set()
        self.normal = ""
        self.notes: list[str] = []
        self._live: Live | None = None

    def live(self) -> Live:
        self._live = Live(self.render(), console=self.console, refresh_per_second=12, transient=False)
        return self._live

    def update(self, event: Event) -> None:
        if isinstance(event, SourcesEvent):
            self.notes.append(f"{len(event.sources)} passages retrieved")
        elif isinstance(event, RouteEvent):
            self.notes.append(f"route: {event.mode} ({event.reason})")
        elif isinstance(event, FallbackEvent):
            self.notes.append(f"fallback to normal decoding: {event.reason}")
            self.titles.clear()
        elif isinstance(event, SkeletonRetry):
            self.notes.append(event.reason)
            self.skeleton = ""
            self.titles.clear()
            self.texts.clear()
        elif isinstance(event, SkeletonDelta):
            self.skeleton += event.text
        elif isinstance(event, PointStarted):
            self.titles[event.index] = event.title
            self.texts.setdefault(event.index, "")
        elif isinstance(event, PointDelta):
            self.texts[event.index] = self.texts.get(event.index, "") + event.text
        elif isinstance(event, PointDone):
            self.done.add(event.index)
        elif isinstance(event, AnswerDelta):
            self.normal += event.text
        if self._live is not None:
            self._live.update(self.render())

    def render(self) -> Group:
        parts: list[Text] = [Text(note, style="dim") for note in self.notes]
        if self.titles:
            for index in sorted(self.titles):
                mark = "✓ " if index in self.done else "… "
                line = Text(mark, style="green" if index in self.done else "yellow")
                line.append(f"{index}. {self.titles[index]}", style="bold")
                line.append(self.texts.get(index, ""))
                parts.append(line)
        elif self.skeleton:
            parts.append(Text("skeleton\n", style="dim") + Text(self.skeleton, style="bold"))
        if self.normal:
            parts.append(Text(self.normal))
        return Group(*parts)


def stats_table(result: AnswerResult) -> Table:
    table = Table(title="latency", show_header=False, title_justify="left")
    for name, value in stats_rows(result):
        table.add_row(name, value)
    return table


def register(app: typer.Typer) -> None:
    """Add ``ask`` to sotrag's command line."""
    app.command()(ask)
