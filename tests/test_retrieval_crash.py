"""Crash safety and locking across processes: an ingest killed at any point leaves a consistent index."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sotrag.retrieval.errors import IndexLockedError
from sotrag.retrieval.index import DocumentIndex

DOCS = Path(__file__).parent / "data" / "retrieval_docs"

INGEST_SCRIPT = """
import sys
from sotrag.retrieval.index import DocumentIndex
idx = DocumentIndex.open(sys.argv[1], create=True)
def progress(stage, advance, total):
    print(stage, advance, total, flush=True)
summary = idx.ingest(sys.argv[2:], progress=progress)
print("done", summary.counts, flush=True)
"""

LOCK_SCRIPT = """
import sys, time
from pathlib import Path
from sotrag.retrieval.index import _writer_lock
with _writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([*sys.path, env.get("PYTHONPATH", "")])
    return env


def _assert_consistent(index_dir: Path, expected_sources: set[str]) -> DocumentIndex:
    """Reopen from disk as a fresh process would, and check store, FTS and FAISS agree and search works."""
    import faiss

    idx = DocumentIndex.open(index_dir)
    assert {d.source for d in idx.list_documents()} == expected_sources
    store_ids = {r[0] for r in idx._store.conn.execute("SELECT vector_id FROM chunks")}
    fts_ids = {r[0] for r in idx._store.conn.execute("SELECT rowid FROM chunks_fts")}
    vec = idx._current_vectors()
    assert set(faiss.vector_to_array(vec.id_map).tolist()) == store_ids == fts_ids
    counts = idx._store.conn.execute(
        "SELECT d.source, d.n_chunks, COUNT(c.vector_id) FROM documents d"
        " LEFT JOIN chunks c USING (doc_id) GROUP BY d.doc_id"
    ).fetchall()
    assert all(n == m for _, n, m in counts)
    assert idx._store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    hits = idx.search("black spot on rose leaves", k=3)
    assert hits and hits[0].source == "garden/roses.md"
    return idx


@pytest.fixture
def base(tmp_path: Path) -> tuple[Path, Path]:
    """An index over garden/ only; the crashing ingest then edits roses.md and adds kitchen/."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS / "garden", docs / "garden")
    index_dir = tmp_path / "index"
    idx = DocumentIndex.open(index_dir, create=True)
    idx.ingest([docs])
    idx.close()
    shutil.copytree(DOCS / "kitchen", docs / "kitchen")
    roses = docs / "garden" / "roses.md"
    roses.write_text(roses.read_text().replace("balanced fertiliser", "seaweed tonic"))
    return docs, index_dir


OLD = {"garden/roses.md", "garden/tomatoes.md"}
NEW = OLD | {"kitchen/bread.md", "kitchen/coffee.html", "kitchen/notes.txt"}


@pytest.mark.parametrize(
    ("crash_at", "expected"),
    [("mid_write", OLD), ("after_commit", NEW), ("faiss_written", NEW)],
)
def test_killed_ingest_leaves_a_consistent_index(base: tuple[Path, Path], crash_at: str, expected: set[str]) -> None:
    docs, index_dir = base
    proc = subprocess.run(
        [sys.executable, "-c", INGEST_SCRIPT, str(index_dir), str(docs)],
        env=_env(SOTRAG_CRASH_AT=crash_at),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    idx = _assert_consistent(index_dir, expected)
    seaweed = idx.search("seaweed tonic", k=1, mode="lexical")
    assert bool(seaweed) == (expected == NEW)
    # the dead writer's lock is gone with it; the next ingest finishes the job
    summary = idx.ingest([docs])
    assert summary.counts["failed"] == 0
    _assert_consistent(index_dir, NEW)
    assert not list(index_dir.glob(".*.tmp-*"))


def test_ingest_killed_at_a_random_moment(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    index_dir = tmp_path / "index"
    DocumentIndex.open(index_dir, create=True).ingest([docs / "garden"]).counts  # noqa: B018
    # More files, so the kill lands while the ingest is busy embedding them.
    many = docs / "many"
    many.mkdir()
    for i in range(30):
        body = "\n\n".join(
            f"## Watch {j}\n\n"
            + " ".join(
                f"Log entry {i}.{j}.{n}: the keeper trimmed wick {i * 7 + j + n} and noted wind from bearing "
                f"{(i * 37 + j * 11 + n) % 360} degrees."
                for n in range(4)
            )
            for j in range(4)
        )
        (many / f"log-{i:03d}.md").write_text(f"# Lighthouse log {i}\n\n{body}\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST_SCRIPT, str(index_dir), str(docs / "garden"), str(many)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("embed 0"):  # embedding has started: kill it part-way through
            break
    time.sleep(random.uniform(0.2, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    idx = DocumentIndex.open(index_dir)
    assert {d.source for d in idx.list_documents()} == {"roses.md", "tomatoes.md"}
    assert idx._current_vectors().ntotal == idx._store.count_chunks()
    assert idx.search("black spot on rose leaves", k=1)[0].source == "roses.md"


def test_second_writer_process_gets_index_is_locked(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    idx = DocumentIndex.open(index_dir, create=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_SCRIPT, str(index_dir)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(IndexLockedError, match=rf"index is locked: another process \(pid {holder.pid}\)"):
            idx.ingest([DOCS / "garden"])
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert idx.ingest([DOCS / "garden"]).counts["added"] == 2
