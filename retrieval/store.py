"""The SQLite document store: documents, chunks (text, heading, metadata, embedding) and an FTS5 table.

SQLite is the source of truth. Embeddings are stored here as float32 blobs, so the FAISS index can always
be rebuilt from the store (that is how a reader recovers if a writer died between committing the store
and renaming the new FAISS file into place). An ingest commits in batches of whole files, each one
transaction: killed half-way, SQLite's journal rolls back the open batch and keeps the committed ones. WAL
mode lets readers search while a writer works. A document's identity is its file's real ``path``; its
``source`` (the relative path users see) is unique too, disambiguated when two files would share one.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = "1"
# The longest filter value (characters): far above any real path, heading or id, and far below SQLite's own limit
# for a GLOB pattern (SQLITE_MAX_LIKE_PATTERN_LENGTH, 50,000 bytes by default; a character is up to 4 bytes).
MAX_FILTER_LENGTH = 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    root TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    n_chunks INTEGER NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    vector_id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    heading TEXT NOT NULL,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, position);
CREATE INDEX IF NOT EXISTS documents_path ON documents(path);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(text_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, heading, text, tokenize = 'porter unicode61'
);
"""

# Words that carry no meaning for BM25 and only dilute an OR-query.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "should",
        "could",
        "use",
        "using",
        "used",
        "get",
        "way",
        "ways",
        "make",
        "does",
        "did",
        "have",
        "has",
        "need",
        "want",
    ]
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class ChunkRow:
    vector_id: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    position: int
    heading: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class DocumentRow:
    doc_id: str
    source: str
    path: str
    root: str
    kind: str
    title: str
    content_hash: str
    size: int
    n_chunks: int
    ingested_at: float


# A word with a case change inside (camelCase, CapWords, an acronym before a word) and where to cut it.
_IDENTIFIER = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:[a-z0-9][A-Z]|[A-Z][A-Z][a-z])[A-Za-z0-9]*\b")
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def lexical_text(text: str) -> str:
    """What BM25 indexes for a chunk: the text, plus the parts of its camelCase identifiers on a last line
    (``HTTPException`` -> ``HTTP Exception``), so "exception" finds it. FTS5's tokenizer already splits
    snake_case at the underscores. Chosen on the tune half of the dev questions (docs/retrieval.md)."""
    found = sorted(set(_IDENTIFIER.findall(text)))
    return f"{text}\n{' '.join(_HUMP.sub(' ', w) for w in found)}" if found else text


def fts_query(query: str) -> str:
    """Turn free text into a safe FTS5 OR-query of quoted terms, without stopwords (kept if nothing else)."""
    words = [w.lower() for w in _WORD.findall(query)]
    terms = [w for w in words if w not in STOPWORDS] or words
    seen: list[str] = []
    for w in terms:
        if w not in seen:
            seen.append(w)
    return " OR ".join(f'"{w}"' for w in seen)


def source_filter_sql(pattern: str) -> tuple[str, list[str]]:
    """A source filter is a glob (``tutorial/*.md``); without wildcards it is a file or a folder
    (``tutorial/cors.md``, ``tutorial`` and ``tutorial/`` all work)."""
    if any(c in pattern for c in "*?["):
        return "d.source GLOB ?", [pattern]
    folder = pattern.rstrip("/")
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in folder)
    return "(d.source = ? OR d.source GLOB ?)", [folder, f"{escaped}/*"]


class Store:
    def __init__(self, path: Path, readonly: bool = False, immutable: bool = False) -> None:
        """``immutable``: the file cannot change (a read-only mount), so SQLite reads it without WAL files."""
        self.path = path
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        if immutable:
            uri = f"file:{path}?mode=ro&immutable=1"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA foreign_keys = ON")
        if not readonly and not immutable:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")

    def create_schema(self, meta: dict[str, str]) -> None:
        self.conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")
        with self.transaction():
            for key, value in {"schema_version": SCHEMA_VERSION, "generation": "0", **meta}.items():
                self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self.conn.close()

    # -- transactions -------------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except BaseException:  # a failed COMMIT (disk full) may leave the transaction open
                    self._rollback()
                    raise
            else:
                self._rollback()

        def _rollback(self) -> None:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # SQLite may already have rolled back itself
                    self.conn.execute("ROLLBACK")

    def transaction(self) -> Store._Tx:
        return Store._Tx(self.conn)

    # -- meta ---------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # -- documents ----------------------------------------------------------------------------------------

    def document_by_source(self, source: str) -> DocumentRow | None:
        row = self.conn.execute("SELECT * FROM documents WHERE source = ?", (source,)).fetchone()
        return DocumentRow(*row) if row else None

    def documents_by_path(self, path: str) -> list[DocumentRow]:
        """Documents of one file (its identity); more than one only in indexes from before identity by path."""
        rows = self.conn.execute("SELECT * FROM documents WHERE path = ? ORDER BY ingested_at", (path,))
        return [DocumentRow(*r) for r in rows]

    def ensure_indexes(self) -> None:
        """Indexes added after the first schema (idempotent; indexes made before them gain them here)."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'documents_path'").fetchone() is None:
            self.conn.execute("CREATE INDEX IF NOT EXISTS documents_path ON documents(path)")

    def document(self, doc_id: str) -> DocumentRow | None:
        row = self.conn.execute("SELECT * FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return DocumentRow(*row) if row else None

    def documents(self) -> list[DocumentRow]:
        return [DocumentRow(*r) for r in self.conn.execute("SELECT * FROM documents ORDER BY source")]

    def count_chunks(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def delete_document(self, conn: sqlite3.Connection, doc_id: str) -> list[int]:
        """Delete a document, its chunks and their FTS rows; returns the freed vector ids."""
        ids = [r[0] for r in conn.execute("SELECT vector_id FROM chunks WHERE doc_id = ?", (doc_id,))]
        conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        return ids

    def insert_document(
        self,
        conn: sqlite3.Connection,
        doc: DocumentRow,
        chunks: Sequence[tuple[str, int, str, str, str, dict[str, Any]]],
        embeddings: np.ndarray,
    ) -> list[int]:
        """Insert a document and its chunks (chunk_id, position, heading, text, text_hash, metadata)."""
        conn.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc.doc_id,
                doc.source,
                doc.path,
                doc.root,
                doc.kind,
                doc.title,
                doc.content_hash,
                doc.size,
                doc.n_chunks,
                doc.ingested_at,
            ),
        )
        ids: list[int] = []
        for (chunk_id, position, heading, text, thash, metadata), vec in zip(chunks, embeddings, strict=True):
            cur = conn.execute(
                "INSERT INTO chunks(chunk_id, doc_id, position, heading, text, text_hash, metadata,"
                " embedding)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chunk_id,
                    doc.doc_id,
                    position,
                    heading,
                    text,
                    thash,
                    json.dumps(metadata),
                    np.asarray(vec, dtype=np.float32).tobytes(),
                ),
            )
            vid = int(cur.lastrowid or 0)
            ids.append(vid)
            conn.execute(
                "INSERT INTO chunks_fts(rowid, title, heading, text) VALUES (?, ?, ?, ?)",
                (vid, doc.title, lexical_text(heading), lexical_text(text)),
            )
        return ids

    # -- chunks -------------------------------------------------------------------------------------------

    def cached_embeddings(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Embeddings already in the store, by chunk text hash (re-ingests only embed what is new)."""
        q = "SELECT text_hash, embedding FROM chunks WHERE text_hash IN ({})"
        return {h: np.frombuffer(blob, dtype=np.float32) for h, blob in self._rows_in(q, set(text_hashes))}

    def all_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        ids, vecs = [], []
        for vid, blob in self.conn.execute("SELECT vector_id, embedding FROM chunks ORDER BY vector_id"):
            ids.append(vid)
            vecs.append(np.frombuffer(blob, dtype=np.float32))
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return np.asarray(ids, dtype=np.int64), np.vstack(vecs)

    def embeddings_for(self, vector_ids: Sequence[int]) -> dict[int, np.ndarray]:
        q = "SELECT vector_id, embedding FROM chunks WHERE vector_id IN ({})"
        return {int(vid): np.frombuffer(blob, dtype=np.float32) for vid, blob in self._rows_in(q, vector_ids)}

    def doc_ids(self, vector_ids: Sequence[int]) -> dict[int, str]:
        """The document of each chunk (hybrid search's page boost needs nothing else)."""
        q = "SELECT vector_id, doc_id FROM chunks WHERE vector_id IN ({})"
        return {int(vid): str(doc) for vid, doc in self._rows_in(q, vector_ids)}

    def chunks(self, vector_ids: Sequence[int]) -> dict[int, ChunkRow]:
        q = (
            "SELECT c.vector_id, c.chunk_id, c.doc_id, d.source, d.title, c.position, c.heading, c.text,"
            " c.metadata FROM chunks c JOIN documents d USING (doc_id) WHERE c.vector_id IN ({})"
        )
        return {
            int(r[0]): ChunkRow(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], json.loads(r[8]))
            for r in self._rows_in(q, vector_ids)
        }

    def _rows_in(self, query: str, keys: Iterable[Any]) -> Iterator[Any]:
        """The rows of ``query`` (its ``IN ({})`` filled with placeholders) for ``keys``, 500 keys a statement (under
        SQLite's limit on bound parameters)."""
        keys = list(keys)
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            yield from self.conn.execute(query.format(",".join("?" * len(part))), part)

    def filter_ids(self, filters: dict[str, str]) -> list[int]:
        """Vector ids of chunks matching every filter: source (glob), doc_id, heading (glob), kind. A filter SQLite
        refuses (a pattern too long or complex) is a ``ValueError``: the caller's input, not a damaged index."""
        where, args = self._filter_sql(filters)
        q = f"SELECT c.vector_id FROM chunks c JOIN documents d USING (doc_id) WHERE {where}"
        try:
            return [int(r[0]) for r in self.conn.execute(q, args)]
        except sqlite3.OperationalError as exc:
            if "pattern" in str(exc).lower():
                raise ValueError(f"a filter SQLite cannot match: {exc}") from None
            raise

    @staticmethod
    def _filter_sql(filters: dict[str, str]) -> tuple[str, list[str]]:
        clauses, args = ["1"], []
        for key, value in filters.items():
            if not isinstance(value, str):
                raise ValueError(f"filter {key!r} must be text, not {type(value).__name__}")
            if len(value) > MAX_FILTER_LENGTH:
                raise ValueError(f"filter {key!r} is {len(value)} characters, over the limit of {MAX_FILTER_LENGTH}")
            if key == "source":
                clause, values = source_filter_sql(value)
                clauses.append(clause)
                args.extend(values)
            elif key == "doc_id":
                clauses.append("d.doc_id = ?")
                args.append(value)
            elif key == "heading":
                clauses.append("c.heading GLOB ?")
                args.append(value)
            elif key == "kind":
                clauses.append("d.kind = ?")
                args.append(value)
            else:
                raise ValueError(f"unknown filter {key!r} (use source, heading, doc_id or kind)")
        return " AND ".join(clauses), args

    def lexical_search(
        self,
        query: str,
        limit: int,
        filters: dict[str, str] | None = None,
        weights: tuple[float, float, float] = (2.0, 3.0, 1.0),
    ) -> list[tuple[int, float]]:
        """BM25 over title, heading and text (FTS5), filtered in SQL; (vector_id, score) best first."""
        match = fts_query(query)
        if not match:
            return []
        where, args = self._filter_sql(filters or {})
        w = ", ".join(str(x) for x in weights)
        q = (
            f"SELECT f.rowid, -bm25(chunks_fts, {w}) AS s FROM chunks_fts f"
            " JOIN chunks c ON c.vector_id = f.rowid JOIN documents d USING (doc_id)"
            f" WHERE chunks_fts MATCH ? AND {where} ORDER BY bm25(chunks_fts, {w}) LIMIT ?"
        )
        return [(int(r[0]), float(r[1])) for r in self.conn.execute(q, [match, *args, limit])]
