"""The web UI (Gradio, mounted at ``/`` on the server's FastAPI app): watch Skeleton-of-Thought happen.

The chat shows the skeleton first as a numbered list, then every point filling in place at the same time (⏳
while it streams, ✅ when it is done). Beside it: the stats of the answer and a timeline (skeleton bar, then one
bar per point on one time axis) that makes the parallelism visible; under it the sources, as plain text. A
"compare" switch also runs the other decoding mode for the same question and shows both, with the speed-up.

Updates are throttled to about 12 per second (phase changes are sent at once), so a long answer does not
flood the browser. Everything the model or a document wrote is escaped before it is shown: text, never HTML.
The timeline is a small hand-drawn SVG: no plotting library is needed, and it redraws cheaply while streaming.
"""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from pydantic import ValidationError

from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    Event,
    PointDelta,
    PointDone,
    PointStarted,
    PointWithdrawn,
    RequestedMode,
    RouteEvent,
    SkeletonDelta,
    SkeletonDone,
    Source,
    SourcesEvent,
    stats_rows,
)
from sotrag.app.fold import AnswerSoFar
from sotrag.app.request import AnswerRequest, InvalidQuestion
from sotrag.app.serving.errors import (
    AnswerFailed,
    DocumentConflict,
    DocumentRejected,
    DocumentTooLarge,
    NoIndex,
    NotReady,
    StorageUnavailable,
    UnknownDocument,
    UnsupportedDocument,
)
from sotrag.app.serving.limits import Busy
from sotrag.app.serving.security import key_matches
from sotrag.app.serving.service import Service
from sotrag.app.serving.ui_files import UploadedFiles, UploadRefused
from sotrag.app.serving.validation import public_model_name
from sotrag.retrieval.errors import RetrievalError

UPDATES_PER_SECOND = 12
DONE_MARK = "✓"
PENDING_MARK = "○"
SOURCE_HEADERS = ["#", "file", "heading", "score", "snippet"]
DOCUMENT_HEADERS = ["id", "file", "title", "kind", "chunks", "bytes"]

THEME_CSS = """
#sot-header h1 { margin: 0; font-size: 1.6em; }
#sot-header p { margin: 0.2em 0 0; opacity: 0.8; }
.sot-stats table { width: 100%; border-collapse: collapse; font-size: 0.92em; }
.sot-stats td { padding: 3px 6px; border-bottom: 1px solid var(--border-color-primary); }
.sot-stats td:first-child { opacity: 0.75; white-space: nowrap; }
.sot-timeline svg { width: 100%; height: auto; }
.sot-timeline .tl-wait { fill: var(--neutral-300); }
.sot-timeline .tl-skeleton { fill: #6366f1; }
.sot-timeline .tl-point { fill: #10b981; }
.sot-timeline .tl-normal { fill: #f59e0b; }
.sot-timeline .tl-retrieval { fill: #64748b; }
.sot-timeline text { font-size: 11px; fill: var(--body-text-color); }
.sot-timeline line { stroke: var(--border-color-primary); }
.sot-compare { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.sot-compare > div { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; }
.sot-compare .speedup { grid-column: 1 / span 2; font-size: 1.15em; border: none; padding: 0; }
.sot-compare pre { white-space: pre-wrap; font-family: inherit; margin: 0; }
.sot-muted { opacity: 0.7; }
"""


def theme() -> gr.themes.Base:
    """Local system fonts only: the page must not reach for web fonts (it may be served offline)."""
    return gr.themes.Soft(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
    )


# -- rendering -------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|>~])")


def md_text(text: str) -> str:
    """Model or document text as literal markdown text: HTML escaped, markdown syntax neutralised."""
    flat = " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def citation_link(source: Source) -> str:
    """A point's citation as a markdown link: ``[n]``, with the passage (where it is from, and its text) as the
    link's title, shown on hover; it points at the source's row in the sources table."""
    where = f"{source.source} > {source.heading}" if source.heading else source.source
    if source.page:
        where += f", p. {source.page}"
    passage = " ".join(f"{where}: {source.snippet}".split()).replace("\\", "\\\\").replace('"', "'")
    return f'[\\[{source.n}\\]](#sot-source-{source.n} "{passage}")'


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


@dataclass
class LiveAnswer(AnswerSoFar):
    """The answer so far (the shared fold of its events), with arrival times for the timeline."""

    t0: float = field(default_factory=time.perf_counter)
    skeleton_start: float | None = None
    skeleton_end: float | None = None
    times: dict[int, list[float | None]] = field(default_factory=dict)  # start, first token, end
    normal_times: list[float | None] = field(default_factory=lambda: [None, None, None])

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def feed(self, event: Event) -> bool:
        """Apply one event; True when it changes the phase (sent to the browser at once, not throttled)."""
        now = self.now()
        if super().feed(event):  # a skeleton retry or a fallback: the points' bars go too
            self.times.clear()
            return True
        if isinstance(event, SkeletonDelta) and self.skeleton_start is None:
            self.skeleton_start = now
        elif isinstance(event, SkeletonDone):
            self.skeleton_end = now
        elif isinstance(event, PointStarted):
            self.times[event.index] = [now, None, None]
        elif isinstance(event, PointWithdrawn):  # the reader took the point back: its bar goes with it
            self.times.pop(event.index, None)
        elif isinstance(event, PointDelta):
            t = self.times.setdefault(event.index, [now, None, None])
            if t[1] is None:
                t[1] = now
        elif isinstance(event, PointDone):
            self.times.setdefault(event.index, [now, now, None])[2] = now
        elif isinstance(event, AnswerDelta):
            if self.normal_times[0] is None:
                self.normal_times = [self.skeleton_end or 0.0, now, None]
            self.normal_times[2] = now
        return isinstance(event, (SourcesEvent, RouteEvent, SkeletonDone, AnswerDone))

    def chat_markdown(self) -> str:
        parts = [f"*{md_text(note)}*" for note in self.notes]
        if self.titles or self.skeleton_titles:
            titles = dict(enumerate(self.skeleton_titles, start=1)) | self.titles
            for i in sorted(titles):
                mark = DONE_MARK if i in self.done else PENDING_MARK
                text = md_text(self.texts.get(i, ""))
                cites = " ".join(citation_link(c) for c in self.citations.get(i, []))
                parts.append(f"{mark} **{i}. {md_text(titles[i])}** {text} {cites}".rstrip())
        elif self.normal:
            parts.append(md_text(self.normal))
        elif self.skeleton:
            lines = [ln.strip() for ln in self.skeleton.splitlines() if ln.strip()]
            parts.append("*Skeleton (writing…)*")
            parts.extend(md_text(ln) for ln in lines)
        else:
            parts.append("*thinking…*")
        if self.result is not None:
            r = self.result
            parts.append(
                f"*{r.mode} · {r.stats.num_points} points · {r.stats.total_s:.2f} s · {r.stats.tokens} tokens*"
                if r.mode == "sot"
                else f"*normal decoding · {r.stats.total_s:.2f} s · {r.stats.tokens} tokens*"
            )
        return "\n\n".join(parts)

    def timeline_rows(self) -> list[tuple[str, str, float, float | None, float | None]]:
        """(label, kind, start, first token, end) per bar; exact times from the result once it is there."""
        rows: list[tuple[str, str, float, float | None, float | None]] = []
        r = self.result
        if r is not None:
            s = r.stats
            if s.retrieval_s > 0:
                rows.append(("retrieval", "retrieval", 0.0, None, s.retrieval_s))
            if (r.mode == "sot" or r.fallback_reason) and s.skeleton_s is not None:
                start = s.retrieval_s
                rows.append(("skeleton", "skeleton", start, None, start + s.skeleton_s))
            for p in r.points:
                rows.append((f"point {p.index}", "point", p.start_s, p.first_token_s, p.end_s))
            if r.mode == "normal":
                start = s.retrieval_s + ((s.skeleton_s or 0.0) if r.fallback_reason else 0.0)
                rows.append(("normal", "normal", start, s.ttft_s, s.total_s))
            return rows
        now = self.now()
        if self.skeleton_start is not None:
            rows.append(("skeleton", "skeleton", self.skeleton_start, None, self.skeleton_end or now))
        for i in sorted(self.times):
            p_start, p_first, p_end = self.times[i]
            rows.append((f"point {i}", "point", p_start or 0.0, p_first, p_end or now))
        if self.normal_times[0] is not None:
            n_start, n_first, n_end = self.normal_times
            rows.append(("normal", "normal", n_start or 0.0, n_first, n_end or now))
        return rows


def timeline_svg(rows: list[tuple[str, str, float, float | None, float | None]], total: float | None = None) -> str:
    """Gantt chart of one answer: light = waiting for the first token, solid = generating."""
    if not rows:
        return "<div class='sot-timeline sot-muted'>The timeline appears with the first answer.</div>"
    ends = [r[4] for r in rows if r[4] is not None] + [r[2] for r in rows]
    span = max([total or 0.0, *ends, 1e-3])
    left, width, row_h = 72, 500, 18
    height = len(rows) * row_h + 28

    def x(t: float) -> float:
        return left + width * max(0.0, t) / span

    out = [
        f"<div class='sot-timeline' id='sot-timeline' data-bars='{len(rows)}'>",
        f"<svg viewBox='0 0 {left + width + 10} {height}' role='img' aria-label='timeline of the answer'>",
    ]
    for n, (label, kind, start, first, end) in enumerate(rows):
        y = 4 + n * row_h
        stop = end if end is not None else start
        out.append(f"<text x='2' y='{y + 12}'>{html.escape(label)}</text>")
        if first is not None and first > start:
            out.append(
                f"<rect class='tl-wait' x='{x(start):.1f}' y='{y + 2}' width='{max(x(first) - x(start), 0.5):.1f}' "
                f"height='{row_h - 6}' rx='2'/>"
            )
            bar_start = first
        else:
            bar_start = start
        index = f" data-index='{label.split()[-1]}'" if kind == "point" else ""
        out.append(
            f"<rect class='tl-bar tl-{kind}'{index} x='{x(bar_start):.1f}' y='{y + 2}' "
            f"width='{max(x(stop) - x(bar_start), 1.0):.1f}' height='{row_h - 6}' rx='2'>"
            f"<title>{html.escape(label)}: {start:.3f}–{stop:.3f} s</title></rect>"
        )
    axis_y = len(rows) * row_h + 8
    out.append(f"<line x1='{left}' y1='{axis_y}' x2='{left + width}' y2='{axis_y}'/>")
    for k in range(5):
        t = span * k / 4
        out.append(f"<text x='{x(t) - 8:.1f}' y='{axis_y + 14}'>{t:.2f}s</text>")
    out.append("</svg></div>")
    return "".join(out)


def stats_html(result: AnswerResult, note: str | None) -> str:
    s = result.stats
    grounded = ("grounded", f"yes: {len(result.sources)} passages" if not note else f"no: {note}")
    mode_row, *rest = stats_rows(result)
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in [mode_row, grounded, *rest]
    )
    return (
        f"<div class='sot-stats' id='sot-stats' data-mode='{result.mode}' data-points='{s.num_points}' "
        f"data-grounded='{str(not note).lower()}'><table>{body}</table></div>"
    )


def source_rows(result_sources: list[Any]) -> list[list[Any]]:
    return [[s.n, s.source, s.heading, round(s.score, 4), " ".join(s.snippet.split())] for s in result_sources]


def compare_html(first: AnswerResult | None, second: LiveAnswer, second_mode: str) -> str:
    if first is None:
        return ""
    other = second.result

    def column(title: str, body: str, total: float | None) -> str:
        return (f"<div><b>{html.escape(title)}</b> <span class='sot-muted'>{_seconds(total)}</span>"
                f"<pre>{html.escape(body)}</pre></div>")

    first_title = "Skeleton-of-Thought" if first.mode == "sot" else "normal decoding"
    other_title = "Skeleton-of-Thought" if second_mode == "sot" else "normal decoding"
    other_text = other.answer if other else (second.normal or "\n".join(
        f"{i}. {second.titles[i]}{second.texts.get(i, '')}" for i in sorted(second.titles)
    ) or "…")
    speed = ""
    if other is not None and first.stats.total_s > 0 and other.stats.total_s > 0:
        sot, normal = (first, other) if first.mode == "sot" else (other, first)
        ratio = normal.stats.total_s / sot.stats.total_s
        speed = (f"<div class='speedup' id='sot-speedup' data-speedup='{ratio:.3f}'>speed-up of SoT over normal "
                 f"decoding: <b>{ratio:.2f}×</b> ({_seconds(normal.stats.total_s)} → {_seconds(sot.stats.total_s)})"
                 "</div>")
    return (
        "<div class='sot-compare' id='sot-compare'>"
        + speed
        + column(first_title, first.answer, first.stats.total_s)
        + column(other_title, other_text, other.stats.total_s if other else None)
        + "</div>"
    )


# -- the app -----------------------------------------------------------------------------------------------


def build_ui(service: Service) -> gr.Blocks:
    # Gradio keeps each upload in its cache folder: every 10 minutes files older than 30 are deleted, and the
    # whole cache when the server stops; an upload that was added to the index, or refused, is deleted at once
    # (add_files), and the pending ones are bounded in number and size (ui_mount.PendingUploads).
    with gr.Blocks(title="sotrag", analytics_enabled=False, delete_cache=(600, 1800)) as demo:
        gr.HTML(
            "<div id='sot-header'><h1>sotrag</h1><p>Answers over your documents with Skeleton-of-Thought: a short "
            "skeleton first, then every point written at the same time.</p></div>"
        )
        status = gr.HTML(_status_html(service), elem_id="sot-status")
        history = gr.State([])
        uploads = UploadedFiles.of(demo)
        with gr.Tab("Ask", id="ask"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(
                        elem_id="sot-chat", height=480, label="Answer", buttons=["copy"], feedback_options=None
                    )
                    with gr.Row():
                        question = gr.Textbox(
                            placeholder="Ask a question about your documents…", show_label=False, scale=5,
                            elem_id="sot-question", lines=1, max_lines=6,
                        )
                        ask = gr.Button("Ask", variant="primary", scale=1, elem_id="sot-ask")
                    with gr.Row():
                        mode = gr.Radio(
                            [("auto", "auto"), ("Skeleton-of-Thought", "sot"), ("normal", "normal")],
                            value=service.settings.default_mode, label="Mode", elem_id="sot-mode",
                        )
                        compare = gr.Checkbox(
                            label="Compare: also run the other mode and show the speed-up", elem_id="sot-compare-on"
                        )
                        clear = gr.Button("New chat", size="sm")
                    compare_view = gr.HTML("", elem_id="sot-compare-view")
                with gr.Column(scale=2):
                    gr.Markdown("#### Stats")
                    stats = gr.HTML("<div class='sot-muted'>Stats appear with the first answer.</div>",
                                    elem_id="sot-stats-panel")
                    gr.Markdown("#### Timeline\n<small>grey: waiting for the first token · colour: generating</small>")
                    timeline = gr.HTML(timeline_svg([]), elem_id="sot-timeline-panel")
            gr.Markdown("#### Sources")
            sources = gr.Dataframe(
                headers=SOURCE_HEADERS, value=[], interactive=False, wrap=True, elem_id="sot-sources",
                column_widths=["5%", "18%", "20%", "8%", "49%"],
            )
        with gr.Tab("Documents", id="documents"):
            gr.Markdown("Add markdown, text, HTML or PDF files to the index; answers cite them as sources.")
            upload = gr.File(file_count="multiple", type="filepath", label="Files", elem_id="sot-upload")
            admin_key = gr.Textbox(
                label="Admin key (adding and removing documents needs it)", type="password", elem_id="sot-admin-key",
                visible=service.settings.admin_api_key is not None and not service.settings.server.read_only,
            )
            add = gr.Button("Add to index", variant="primary", elem_id="sot-add")
            doc_status = gr.Markdown("", elem_id="sot-doc-status")
            documents = gr.Dataframe(
                headers=DOCUMENT_HEADERS, value=[], interactive=False, wrap=True, elem_id="sot-documents"
            )
            with gr.Row():
                doc_choice = gr.Dropdown(choices=[], label="Document to remove", elem_id="sot-doc-choice", scale=3)
                remove = gr.Button("Remove", variant="stop", elem_id="sot-remove", scale=1)
                refresh = gr.Button("Refresh", elem_id="sot-refresh", scale=1)

        timer = gr.Timer(2.0, active=service.state == "starting")

        async def respond(
            text: str, mode_value: str, compare_on: bool, chat: list[dict[str, Any]], turns: list[list[str]]
        ) -> AsyncIterator[tuple[Any, ...]]:
            chat = [m for m in chat if isinstance(m, dict)] if isinstance(chat, list) else []
            bad = _bad_input(text, turns)
            text = text if isinstance(text, str) else ""
            turns = turns if _is_turns(turns) else []
            compare_on = compare_on is True
            chat.append({"role": "user", "content": md_text(text)})
            chat.append({"role": "assistant", "content": "*thinking…*"})
            skip = gr.skip()
            try:
                if bad is not None:
                    raise InvalidQuestion(bad)
                request = AnswerRequest(
                    question=text, mode=_mode(mode_value), history=tuple((q, a) for q, a in turns)
                )
                run = await service.answer(request, surface="ui")
            except ValidationError as exc:  # the request's own checks: one short line, not pydantic's report
                chat[-1] = {"role": "assistant", "content": f"⚠ {md_text(_validation_message(exc))}"}
                yield text, chat, skip, skip, skip, skip, turns
                return
            except (InvalidQuestion, NotReady, Busy) as exc:
                chat[-1] = {"role": "assistant", "content": f"⚠ {md_text(str(exc))}"}
                yield text, chat, skip, skip, skip, skip, turns
                return
            live = LiveAnswer()
            yield "", chat, skip, timeline_svg([]), [], "", turns
            last = 0.0
            try:
                async for event in run.events():
                    phase = live.feed(event)
                    now = time.perf_counter()
                    if phase or now - last >= 1 / UPDATES_PER_SECOND:
                        last = now
                        chat[-1] = {"role": "assistant", "content": live.chat_markdown()}
                        sources_value = source_rows(live.sources) if isinstance(event, SourcesEvent) else skip
                        yield skip, chat, skip, timeline_svg(live.timeline_rows()), sources_value, skip, skip
            except (AnswerFailed, Busy) as exc:
                chat[-1] = {"role": "assistant", "content": f"⚠ {md_text(str(exc))}"}
                yield skip, chat, skip, skip, skip, skip, turns
                return
            result = live.result
            assert result is not None
            note = service.response_for(result).grounding_note
            turns = [*turns, [result.question, result.answer]]
            chat[-1] = {"role": "assistant", "content": live.chat_markdown()}
            yield (skip, chat, stats_html(result, note), timeline_svg(live.timeline_rows(), result.stats.total_s),
                   source_rows(result.sources), "", turns)
            if not compare_on:
                return
            other_mode: RequestedMode = "normal" if result.mode == "sot" else "sot"
            other = LiveAnswer()
            try:
                other_request = AnswerRequest(
                    question=result.question, mode=other_mode, history=tuple((q, a) for q, a in turns[:-1])
                )
                other_run = await service.answer(other_request, surface="ui")
                async for event in other_run.events():
                    phase = other.feed(event)
                    now = time.perf_counter()
                    if phase or now - last >= 1 / UPDATES_PER_SECOND:
                        last = now
                        yield skip, skip, skip, skip, skip, compare_html(result, other, other_mode), skip
            except (InvalidQuestion, NotReady, AnswerFailed, Busy) as exc:
                yield skip, skip, skip, skip, skip, f"<div>⚠ {html.escape(str(exc))}</div>", skip
                return
            yield skip, skip, skip, skip, skip, compare_html(result, other, other_mode), skip

        outputs = [question, chatbot, stats, timeline, sources, compare_view, history]
        for trigger in (ask.click, question.submit):
            trigger(respond, [question, mode, compare, chatbot, history], outputs, concurrency_limit=16)
        clear.click(lambda: ([], [], ""), None, [chatbot, history, compare_view])

        def poll_status() -> tuple[str, Any]:
            return _status_html(service), gr.Timer(active=service.state == "starting")

        timer.tick(poll_status, None, [status, timer])
        demo.load(poll_status, None, [status, timer])

        async def list_docs(message: str = "") -> tuple[Any, Any, str]:
            try:
                docs = await asyncio.to_thread(service.list_documents)
            except (NoIndex, NotReady) as exc:
                return [], gr.Dropdown(choices=[], value=None), f"⚠ {md_text(str(exc))}"
            rows = [[d.doc_id, d.source, d.title, d.kind, d.chunks, d.size] for d in docs]
            choices = [(f"{d.source} ({d.doc_id})", d.doc_id) for d in docs]
            return rows, gr.Dropdown(choices=choices, value=None), message

        def write_refusal(typed: str | None) -> str | None:
            """Why the UI may not write now (read-only; the admin key missing or wrong), else None."""
            admin = service.settings.admin_api_key
            if service.settings.server.read_only or admin is None:
                return service.may_write_documents()
            if isinstance(typed, str) and typed and key_matches(typed.strip(), admin.get_secret_value()):
                return None
            return "adding or removing documents needs the admin key: type it in the Admin key field"

        async def add_files(paths: list[str] | None, typed_key: str | None) -> tuple[Any, Any, str, Any, str]:
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                paths = None  # a caller's JSON through Gradio's API, not the file picker's list of paths
            picked: list[Path] = []
            refused: str | None = None
            for p in paths or []:  # only files this server's upload stored: never any other path of the server
                try:
                    picked.append(uploads.check(p))
                except UploadRefused as exc:
                    refused = str(exc)
            refused = refused or write_refusal(typed_key)
            if refused or not picked:
                for path in picked:  # a refused upload is not kept either
                    uploads.discard(path)
                rows, choice, message = await list_docs(f"⚠ {refused or 'choose one or more files first'}")
                return rows, choice, message, None if picked else gr.skip(), _status_html(service)
            staged: list[tuple[str, Path]] = []
            try:
                for path in picked:
                    name = service.check_upload(path.name, path.stat().st_size)
                    fd, tmp = tempfile.mkstemp(prefix="sotrag-upload-")
                    with open(fd, "wb") as out, path.open("rb") as src:
                        shutil.copyfileobj(src, out)
                    staged.append((name, Path(tmp)))
                response = await service.add_documents(staged)
                done = ", ".join(f"{f.source} ({f.status}, {f.chunks} chunks)" for f in response.files)
                message = f"{DONE_MARK} {md_text(done)}"
            except UPLOAD_ERRORS as exc:  # every documented upload error, in its own one line
                message = f"⚠ {md_text(str(exc))}"
            except RetrievalError:
                message = "⚠ the index cannot be written right now (another process may be writing to it)"
            except OSError as exc:  # the picked file gone or unreadable, or no room for its temporary copy
                message = f"⚠ the file cannot be read or copied: {md_text(exc.strerror or type(exc).__name__)}"
            finally:
                for _, tmp_path in staged:
                    tmp_path.unlink(missing_ok=True)
                for path in picked:  # Gradio's stored upload: not kept past its use, added or refused
                    uploads.discard(path)
            rows, choice, message = await list_docs(message)
            return rows, choice, message, None, _status_html(service)

        async def remove_doc(doc_id: str | None, typed_key: str | None) -> tuple[Any, Any, str, str]:
            refused = write_refusal(typed_key)
            if not isinstance(doc_id, str):
                doc_id = None
            if refused or not doc_id:
                rows, choice, message = await list_docs(f"⚠ {refused or 'choose a document to remove'}")
                return rows, choice, message, _status_html(service)
            try:
                removed = await service.remove_document(doc_id)
                message = f"removed {md_text(', '.join(d.source for d in removed))}"
            except (NoIndex, NotReady, UnknownDocument) as exc:
                message = f"⚠ {md_text(str(exc))}"
            except RetrievalError:
                message = "⚠ the index cannot be written right now (another process may be writing to it)"
            rows, choice, message = await list_docs(message)
            return rows, choice, message, _status_html(service)

        add.click(add_files, [upload, admin_key], [documents, doc_choice, doc_status, upload, status])
        remove.click(remove_doc, [doc_choice, admin_key], [documents, doc_choice, doc_status, status])
        refresh.click(list_docs, None, [documents, doc_choice, doc_status])
        demo.load(list_docs, None, [documents, doc_choice, doc_status])
    _short_input_errors(demo, uploads)
    return demo


UPLOAD_ERRORS = (
    NoIndex, NotReady, UnsupportedDocument, DocumentTooLarge, DocumentRejected, DocumentConflict, StorageUnavailable
)
_TYPE_NOTE = re.compile(r"\s*\(type: <class '[^']*'>\)")  # Gradio's note of a value's Python type


def _short_input_errors(demo: gr.Blocks, uploads: UploadedFiles) -> None:
    """Gradio checks a caller's inputs against its components' own pydantic models before our functions run (a
    chat history that is not a list, a file list that is a number): its refusal is pydantic's multi-line report
    (with a link to pydantic's docs) and a traceback on the console. Any caller can reach the API functions, so a
    bad input gets one short line instead, as every other surface gives, and no traceback.

    Every file path an event names is checked first (``ui_files``): Gradio would otherwise copy any server path a
    caller writes into its cache and hand it to the function."""
    preprocess = demo.preprocess_data

    async def preprocess_data(block_fn: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            uploads.check_event(inputs)
        except UploadRefused as exc:
            raise gr.Error(f"bad input: {exc}", print_exception=False) from None
        try:
            return await preprocess(block_fn, inputs, *args, **kwargs)
        except gr.Error as exc:
            message = _TYPE_NOTE.sub("", (str(exc.message).strip().splitlines() or ["not valid"])[0])[:200]
            raise gr.Error(f"bad input: {message}", print_exception=False) from None
        except (ValidationError, ValueError, TypeError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else exc
            message = _validation_message(cause) if isinstance(cause, ValidationError) else "a value is not valid"
            raise gr.Error(f"bad input: {message}", print_exception=False) from None

    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]


def _mode(value: object) -> RequestedMode | None:
    """The mode the user picked; None (the server's default mode) for anything else."""
    return value if isinstance(value, str) and value in ("sot", "normal", "auto") else None  # type: ignore[return-value]


def _is_turns(turns: object) -> bool:
    """Whether the UI's history state is what the UI keeps: a list of [question, answer] text pairs."""
    return isinstance(turns, list) and all(
        isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in turns
    )


def _bad_input(text: object, turns: object) -> str | None:
    """Why the UI's API inputs cannot be answered (Gradio passes a caller's JSON through as it is), or None."""
    if not isinstance(text, str):
        return "the question must be text"
    if turns is not None and not _is_turns(turns):
        return "the history must be a list of [question, answer] text pairs"
    return None


def _validation_message(exc: ValidationError) -> str:
    """pydantic's first error as one short line (its full report names library internals)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(x) for x in first.get("loc", ()) if not isinstance(x, int))
    message = str(first.get("msg", "not valid")).splitlines()[0][:200]
    return f"{where}: {message}" if where else message


def _status_html(service: Service) -> str:
    if service.state == "failed":
        text, state = f"The engine failed to start: {service.error}", "failed"
    elif service.state == "starting":
        text, state = "The engine is starting… (about a minute on a CPU)", "starting"
    else:
        engine = service.engine
        model = public_model_name(engine.model_name) if engine else "?"
        try:
            idx = service.index_status()
        except Exception:  # a status line must never break the page
            idx = None
        if service.index is None:
            where = "no document index: answers are not grounded"
        elif idx is None or idx.documents == 0:
            where = "the index is empty: answers are not grounded until you add documents"
        else:
            where = f"index: {idx.documents} documents, {idx.chunks} chunks"
        text, state = f"Ready · model {model} · {where}", "ready"
    return f"<div class='sot-muted' data-state='{state}'>{html.escape(text)}</div>"
