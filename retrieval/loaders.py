"""Find files under the given paths and load them with LangChain loaders into ``Document`` objects.

Every file is shown by its path relative to the folder that was ingested (``source``), which is what a user
recognises in search results and citations; it is identified by its real path (``FoundFile.path``), so two
files with the same relative path under different folders are two documents. Discovery never leaves the
folder it was given: a symlink (file or folder) that points outside is skipped with a reason.

Text must be text: binary content (NUL bytes, a known binary signature, control characters) is refused with
the reason, and bytes that are not UTF-8 are decoded with the most plausible of the common legacy encodings
(charset-normalizer's mess measure, a mixed-script check and a preference for the common codecs), or
refused when none is plausible; a wrong guess would index garbage that then ranks in search.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import os
import re
import unicodedata
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


@dataclass(frozen=True)
class FoundFile:
    """One file to ingest. ``path`` is its identity (the real, resolved path); ``source`` what users see."""

    path: Path  # absolute and resolved: the document's identity
    source: str  # relative to the ingested root, POSIX separators
    root: Path  # the folder it was found under (its parent for a single file)
    read_from: Path | None = None  # read the bytes from here instead of ``path`` (an upload being staged)
    skip_reason: str = ""  # found but not to be read (a symlink out of the folder)


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
    are skipped. Symlinks are not followed out of the folder: a link to a file outside it is yielded with a
    ``skip_reason``, a linked folder is not entered (its target, when inside, is walked as itself). A path
    given explicitly is taken as given (it may be a link). A path that does not exist raises
    :class:`InputPathError` before anything is read.
    """
    resolved = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputPathError(f"path does not exist: {raw}")
        resolved.append(p.resolve())
    for p in resolved:
        if p.is_file():
            candidates: list[FoundFile] = [FoundFile(path=p, source=p.name, root=p.parent)]
        else:
            candidates = list(_walk(p))
        for f in candidates:
            if include and not _matches(f.source, include):
                continue
            if exclude and _matches(f.source, exclude):
                continue
            yield f


def _walk(root: Path) -> Iterator[FoundFile]:
    """Files under ``root`` in sorted order, without following symlinks (``os.walk(followlinks=False)``).

    Links come after the regular files of their folder, so a file reached both ways is named by its own path."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # a linked folder is listed, never entered
        here = Path(folder)
        links: list[FoundFile] = []
        for name in sorted(files):
            if name.startswith("."):
                continue
            f = here / name
            source = f.relative_to(root).as_posix()
            if not f.is_symlink():
                if f.is_file():
                    yield FoundFile(path=f, source=source, root=root)
                continue
            target = f.resolve()
            if not target.is_relative_to(root):
                links.append(FoundFile(path=f, source=source, root=root, skip_reason="symlink to outside the folder"))
            elif target.is_file():
                links.append(FoundFile(path=target, source=source, root=root))
        yield from links


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Common legacy encodings, most likely first (a tie goes to the earlier one). Not here: EBCDIC and other rare
# code pages that decode almost any bytes into plausible-looking letters.
LEGACY_ENCODINGS = (
    "cp1252",
    "iso8859_15",
    "cp1250",
    "cp1251",
    "koi8_r",
    "iso8859_2",
    "cp1253",
    "cp1254",
    "cp1257",
    "cp1255",
    "cp1256",
    "cp932",
    "euc_jp",
    "gb18030",
    "big5",
    "euc_kr",
    "mac_roman",
)
_BOMS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (also docx, xlsx, epub, jar)"),
    (b"%PDF-", "a PDF"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x7fELF", "an ELF executable"),
    (b"BZh", "bzip2 data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\xfd7zXZ\x00", "xz data"),
    (b"Rar!", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x00asm", "WebAssembly"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"RIFF", "RIFF media"),
)
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")  # whitespace, and ESC of terminal captures
MAX_CONTROL_SHARE = 0.02  # more control characters than this: binary (random bytes give ~10%)
MAX_MESS = 0.2  # charset-normalizer's mess ratio above which a decoding is implausible
_WORD = re.compile(r"[^\W\d_]+")
_SAMPLE = 200_000  # characters scored per candidate decoding


class NotTextError(LoadError):
    """The bytes are not text in any plausible encoding (binary content, or an unknown encoding)."""


def _control_share(text: str) -> float:
    if not text:
        return 0.0
    bad = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS)
    return bad / len(text)


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return "CJK" if first in ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH") else first


def _mixed_script_share(text: str) -> float:
    """Share of words mixing alphabets ("cafй": Latin and Cyrillic): the mark of a wrong 8-bit codec."""
    words = _WORD.findall(text)
    if not words:
        return 0.0
    mixed = sum(1 for w in words if len({_script(c) for c in w}) > 1)
    return mixed / len(words)


def _plausibility(text: str) -> float:
    """Lower is more plausible: mess (charset-normalizer), mixed-script words, control characters."""
    from charset_normalizer.md import mess_ratio

    sample = text[:_SAMPLE]
    return mess_ratio(sample, maximum_threshold=1.0) + 2.0 * _mixed_script_share(sample) + 10 * _control_share(sample)


def sniff_binary(data: bytes) -> str | None:
    """Why ``data`` is binary rather than text, or None. Checked before any decoding."""
    for sig, what in _SIGNATURES:
        if data.startswith(sig):
            return f"binary content, not text: {what}"
    if b"\x00" in data[:65536]:
        return "binary content (NUL bytes), not text"
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode text bytes: a byte-order mark, else strict UTF-8, else the most plausible legacy encoding.

    Raises :class:`NotTextError` for binary content or bytes no common encoding reads plausibly.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec.replace("-sig", ""))
            except UnicodeDecodeError as exc:
                raise NotTextError(f"invalid {codec} text at byte {exc.start}") from None
            return _checked(text, codec.replace("-sig", "")), codec.replace("-sig", "")
    reason = sniff_binary(data)
    if reason:
        raise NotTextError(reason)
    try:
        return _checked(data.decode("utf-8"), "utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best: tuple[float, int, str, str] | None = None
    for rank, codec in enumerate(LEGACY_ENCODINGS):
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if _control_share(text[:_SAMPLE]) > MAX_CONTROL_SHARE:
            continue
        score = (_plausibility(text), rank, codec, text)
        if best is None or score[:2] < best[:2]:
            best = score
    if best is None or best[0] > MAX_MESS:
        raise NotTextError("not UTF-8, and no common text encoding reads it plausibly (binary, or save it as UTF-8)")
    return best[3], best[2]


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def decode_html(data: bytes) -> tuple[str, str]:
    """HTML may declare its encoding (``<meta charset>``); a declaration that decodes cleanly wins."""
    m = _META_CHARSET.search(data[:4096])
    if m and not any(data.startswith(bom) for bom, _ in _BOMS) and sniff_binary(data) is None:
        try:
            codec = codecs.lookup(m.group(1).decode("ascii")).name
            return _checked(data.decode(codec), codec), codec
        except (LookupError, UnicodeDecodeError, NotTextError):
            pass
    return decode_text(data)


def _checked(text: str, codec: str) -> str:
    if _control_share(text[:_SAMPLE]) > MAX_CONTROL_SHARE:
        raise NotTextError(f"binary content (control characters), not {codec} text")
    return text


class DecodedTextLoader(BaseLoader):
    """A LangChain loader for Markdown and plain text, decoded by :func:`decode_text` (binary is refused)."""

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
        text, encoding = decode_html(data)
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


def load_file(path: Path, data: bytes, kind: str | None = None) -> list[Document]:
    """Load one file's already-read bytes into LangChain documents; :class:`LoadError` if it cannot be.

    ``path`` is where the bytes are (PDFs are parsed from it); ``kind`` defaults to the one its suffix names."""
    kind = kind or file_kind(path)
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
