"""Split loaded documents into chunks with LangChain splitters, keeping each chunk's heading path.

Markdown is split at headings first (``MarkdownHeaderTextSplitter``), so every chunk knows the sections it
sits in ("Tutorial > Query Parameters > Optional parameters"); long sections are then cut with a
Markdown-aware ``RecursiveCharacterTextSplitter``. Small neighbouring sections under the same parent are
merged so a chunk is never just a heading and one sentence. Text, HTML and PDF pages are cut with the
recursive splitter alone (a PDF chunk's heading is its page).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:  # LangChain loads only where text is split: the settings (ChunkingConfig) import without it
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_CHUNK_OVERLAP = 150
DEFAULT_MIN_CHUNK = 300

_ANCHOR = re.compile(r"\s*\{\s*#[^}]*\}\s*$")  # "First Steps { #first-steps }"
_INLINE_TAGS = re.compile(r"</?(?:font|span|u|b|i|div|strong|em)\b[^>]*>", re.IGNORECASE)


@dataclass
class Chunk:
    text: str
    heading: str
    position: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        """What gets embedded: the heading path gives a short chunk the context a reader has."""
        return f"{self.heading}\n\n{self.text}" if self.heading else self.text


MergeScope = Literal["siblings", "page"]
MERGE_SCOPES: tuple[str, ...] = get_args(MergeScope)


@dataclass(frozen=True)
class ChunkingConfig:
    """How Markdown is cut. A chunk shorter than ``min_chunk`` takes in the next section while both fit in
    ``chunk_size``; ``merge_scope`` says which next sections may join: ``siblings`` (the same parent heading) or
    any section of the ``page`` (the chunk is then headed by the common heading path, at least the title)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    min_chunk: int = DEFAULT_MIN_CHUNK
    merge_scope: MergeScope = "siblings"

    def __post_init__(self) -> None:
        if self.merge_scope not in MERGE_SCOPES:
            raise ValueError(f"unknown merge scope {self.merge_scope!r} (use siblings or page)")


def clean_heading(text: str) -> str:
    return _ANCHOR.sub("", text).strip()


def _clean_markdown(text: str) -> str:
    # Terminal captures in the docs are wrapped in colour tags; they only add noise to embeddings and BM25.
    return _INLINE_TAGS.sub("", text)


def _heading_path(metadata: dict[str, Any]) -> list[str]:
    return [clean_heading(str(metadata[key])) for _, key in HEADERS if metadata.get(key)]


def _split_long(text: str, splitter: RecursiveCharacterTextSplitter) -> list[str]:
    return [t for t in splitter.split_text(text) if t.strip()]


def split_markdown(text: str, title: str, cfg: ChunkingConfig) -> list[tuple[str, str]]:
    """(heading path, text) pairs for one Markdown document."""
    from langchain_text_splitters import Language, MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

    sections = MarkdownHeaderTextSplitter(HEADERS, strip_headers=True).split_text(_clean_markdown(text))
    recursive = RecursiveCharacterTextSplitter.from_language(
        Language.MARKDOWN, chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap
    )
    # Merge small consecutive sections: while a chunk is shorter than min_chunk, the next section joins it
    # (if the two stay under chunk_size and share all but the last heading). The merged chunk is headed by
    # the common heading path, and each merged section keeps its own sub-heading inline.
    merged: list[tuple[list[str], list[tuple[list[str], str]]]] = []
    for section in sections:
        path = _heading_path(section.metadata) or ([title] if title else [])
        body = section.page_content.strip()
        if not body:
            continue
        if merged:
            prev_path, parts = merged[-1]
            size = sum(len(b) for _, b in parts)
            common = _common_prefix(prev_path, path)
            related = cfg.merge_scope == "page" or len(common) >= max(min(1, len(prev_path)), len(prev_path) - 1)
            if size < cfg.min_chunk and size + len(body) < cfg.chunk_size and related:
                merged[-1] = (common, [*parts, (path, body)])
                continue
        merged.append((path, [(path, body)]))
    out: list[tuple[str, str]] = []
    for path, parts in merged:
        heading = " > ".join(path)
        texts = []
        for sub, body in parts:
            label = " > ".join(sub[len(path) :])
            texts.append(f"{label}\n{body}" if label else body)
        out.extend((heading, piece) for piece in _split_long("\n\n".join(texts), recursive))
    return out


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def split_documents(docs: Sequence[Document], kind: str, title: str, cfg: ChunkingConfig) -> list[Chunk]:
    """Chunk one file's loaded documents; positions are 0.. in reading order."""
    pieces: list[tuple[str, str, dict[str, Any]]] = []
    if kind == "markdown":
        for d in docs:
            pieces.extend((h, t, {}) for h, t in split_markdown(d.page_content, title, cfg))
    else:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap)
        for d in docs:
            extra: dict[str, Any] = {}
            heading = title
            if kind == "pdf" and "page" in d.metadata:
                page = int(d.metadata["page"]) + 1
                extra["page"] = page
                heading = f"{title} > page {page}" if title else f"page {page}"
            pieces.extend((heading, t, extra) for t in _split_long(d.page_content, splitter))
    return [Chunk(text=t, heading=h, position=i, metadata=m) for i, (h, t, m) in enumerate(pieces)]


def document_title(docs: Sequence[Document], kind: str, fallback: str) -> str:
    """The first H1 of a Markdown file, an HTML <title>, a PDF's title, or the file name."""
    if kind == "markdown" and docs:
        for line in docs[0].page_content.splitlines():
            if line.startswith("# "):
                return clean_heading(line[2:])
    for d in docs[:1]:
        title = str(d.metadata.get("title") or "").strip()
        if title:
            return title
    return fallback


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_doc_id(source: str) -> str:
    """Stable id of a document: derived from its source path only, so it survives edits."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def make_chunk_id(doc_id: str, position: int, text: str) -> str:
    """Stable id of a chunk: same document, position and text give the same id across re-ingests."""
    digest = hashlib.sha1(f"{doc_id}\0{position}\0{text}".encode()).hexdigest()[:12]
    return f"{doc_id}-{position:04d}-{digest}"
