"""Find files under the given paths and load them with LangChain loaders into ``Document`` objects.

Every file is identified by its path relative to the folder that was ingested (``source``), which is what a
user recognises in search results and citations. Text is decoded robustly (UTF-8, then detection, then
replacement characters) so a badly encoded file never crashes an ingest.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from sotrag.retrieval.errors import InputPathError, LoadError

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx"}
TEXT_SUFFIXES = {".txt", ".text", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute
    source: str  # relative to the ingested root, POSIX separators
    root: Path  # the folder it was found under (its parent for a single file)


def file_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    return None


def _matches(source: str, patterns: Sequence[str]) -> bool:
    name = source.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(source, p) or fnmatch.fnmatch(name, p) for p in patterns)


def discover(
    paths: Sequence[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[FoundFile]:
    """Yield every file under ``paths`` (recursively), filtered by glob ``include``/``exclude`` patterns.

    Patterns match the relative path or the file name (``*.md``, ``tutorial/*``). Hidden files and folders
    are skipped. A path that does not exist raises :class:`InputPathError` before anything is read.
    """
    resolved = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputPathError(f"path does not exist: {raw}")
        resolved.append(p.resolve())
    for p in resolved:
        if p.is_file():
            candidates: list[tuple[Path, Path]] = [(p, p.parent)]
        else:
            candidates = [
                (f, p)
                for f in sorted(p.rglob("*"))
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
        for f, root in candidates:
            source = f.relative_to(root).as_posix()
            if include and not _matches(source, include):
                continue
            if exclude and _matches(source, exclude):
                continue
            yield FoundFile(path=f, source=source, root=root)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes to text: UTF-8 (with or without BOM), else the detected encoding, else UTF-8 with U+FFFD."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is not None and best.encoding:
            return str(best), best.encoding
    except Exception:  # detection is best effort
        pass
    return data.decode("utf-8", errors="replace"), "utf-8 (with replacements)"


class DecodedTextLoader(BaseLoader):
    """A LangChain loader for Markdown and plain text that never fails on encoding (see :func:`decode_text`)."""

    def __init__(self, path: Path, data: bytes | None = None) -> None:
        self.path = path
        self.data = data

    def lazy_load(self) -> Iterator[Document]:
        data = self.data if self.data is not None else self.path.read_bytes()
        text, encoding = decode_text(data)
        yield Document(page_content=text, metadata={"encoding": encoding})


class HTMLTextLoader(BaseLoader):
    """A LangChain loader for HTML: visible text only (no scripts, styles or templates), <title> as title.

    (LangChain's ``BSHTMLLoader`` keeps script bodies in the text and needs lxml; this is the same idea
    with the standard-library parser and robust decoding.)
    """

    def __init__(self, path: Path, data: bytes | None = None) -> None:
        self.path = path
        self.data = data

    def lazy_load(self) -> Iterator[Document]:
        from bs4 import BeautifulSoup

        data = self.data if self.data is not None else self.path.read_bytes()
        text, encoding = decode_text(data)
        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "template", "noscript"]):
            tag.decompose()
        title = soup.title.get_text(strip=True) if soup.title else ""
        if soup.title:
            soup.title.decompose()
        lines = [line.strip() for line in soup.get_text("\n").splitlines()]
        body = "\n".join(line for line in lines if line)
        yield Document(page_content=body, metadata={"title": title, "encoding": encoding})


def _load_pdf(path: Path) -> list[Document]:
    from langchain_community.document_loaders import PyPDFLoader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    try:
        return PyPDFLoader(str(path), mode="page").load()
    except FileNotDecryptedError as exc:
        raise LoadError("encrypted PDF (a password is required)") from exc
    except (PdfReadError, PdfStreamError) as exc:
        raise LoadError(f"corrupt PDF: {exc}") from exc
    except Exception as exc:
        if "decrypt" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise LoadError("encrypted PDF (a password is required)") from exc
        raise LoadError(f"unreadable PDF: {type(exc).__name__}: {exc}") from exc


def load_file(path: Path, data: bytes) -> list[Document]:
    """Load one file's already-read bytes into LangChain documents; :class:`LoadError` if it cannot be."""
    kind = file_kind(path)
    if kind in ("markdown", "text"):
        docs = DecodedTextLoader(path, data).load()
    elif kind == "html":
        docs = HTMLTextLoader(path, data).load()
    elif kind == "pdf":
        docs = _load_pdf(path)
    else:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    for d in docs:
        d.metadata["kind"] = kind
    return docs
