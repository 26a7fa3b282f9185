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
from sotrag.retrieval.index_files import writer_lock
with writer_lock(Path(sys.argv[1])):
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
    vec = idx._vectors.current()
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
    assert idx._vectors.current().ntotal == idx._store.count_chunks()
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


# -- batches: a killed ingest keeps what it committed, and a re-run resumes ------------------------------------

BATCH_SCRIPT = """
import sys
from sotrag.retrieval.index import DocumentIndex
idx = DocumentIndex.open(sys.argv[1], batch_chunks=int(sys.argv[2]))
if sys.argv[3] == "hash":
    from tests.hash_embedder import HashEmbedder
    idx._embedder = HashEmbedder()
def progress(stage, advance, total):
    print(stage, advance, total, flush=True)
print("ready", flush=True)
summary = idx.ingest(sys.argv[5:], prune=sys.argv[4] == "prune", progress=progress)
print("done", summary.counts, summary.chunks_embedded, flush=True)
"""


def _write_logs(folder: Path, n: int, version: int = 0, sections: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "\n\n".join(
            f"## Watch {j}\n\n"
            + " ".join(
                f"Log {version}.{i}.{j}.{k}: the keeper trimmed wick {i * 7 + j + k} and noted wind from bearing "
                f"{(i * 37 + j * 11 + k + version) % 360} degrees."
                for k in range(5)
            )
            for j in range(sections)
        )
        (folder / f"log-{i:03d}.md").write_text(f"# Lighthouse log {i}\n\n{body}\n")


def _chunk_counts(index_dir: Path) -> dict[str, int]:
    idx = DocumentIndex.open(index_dir)
    try:
        return {d.source: d.chunks for d in idx.list_documents()}
    finally:
        idx.close()


def test_rerun_after_a_kill_embeds_only_what_was_not_committed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _write_logs(logs, 12)
    index_dir = tmp_path / "index"
    DocumentIndex.open(index_dir, create=True).close()
    proc = subprocess.run(
        [sys.executable, "-c", BATCH_SCRIPT, str(index_dir), "6", "minilm", "-", str(logs)],
        env=_env(SOTRAG_CRASH_AT="batch_committed:2"),  # killed right after its second batch committed
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    committed = _chunk_counts(index_dir)
    assert 0 < len(committed) < 12 and sum(committed.values()) >= 12  # two batches of >= 6 chunks, whole files
    idx = DocumentIndex.open(index_dir, batch_chunks=6)
    assert idx._vectors.current().ntotal == sum(committed.values())
    summary = idx.ingest([logs])
    total = sum(d.chunks for d in idx.list_documents())
    assert summary.counts["unchanged"] == len(committed) and summary.counts["added"] == 12 - len(committed)
    assert summary.chunks_embedded == total - sum(committed.values())  # nothing committed is embedded again
    assert summary.chunks_cached == 0


def _check_index(index_dir: Path, versions: dict[str, set[str]]) -> int:
    """Consistent and searchable after any stop: FAISS, FTS and the chunks agree, no document is half-written,
    and every document is a version of its file that was really written. Returns the number of documents."""
    import faiss

    from tests.hash_embedder import HashEmbedder

    idx = DocumentIndex.open(index_dir)
    try:
        idx._embedder = HashEmbedder()  # type: ignore[assignment]
        conn = idx._store.conn
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        store_ids = {r[0] for r in conn.execute("SELECT vector_id FROM chunks")}
        fts_ids = {r[0] for r in conn.execute("SELECT rowid FROM chunks_fts")}
        vec = idx._vectors.current()
        assert set(faiss.vector_to_array(vec.id_map).tolist()) == store_ids == fts_ids
        rows = conn.execute(
            "SELECT d.source, d.content_hash, d.n_chunks, COUNT(c.vector_id) FROM documents d"
            " LEFT JOIN chunks c USING (doc_id) GROUP BY d.doc_id"
        ).fetchall()
        for source, digest, n, m in rows:
            assert n == m, source
            assert digest in versions[source], source
        if rows:
            assert idx.search("keeper trimmed wick", k=3, mode="lexical")
            assert idx.search("wind bearing degrees", k=3, mode="hybrid")
        return len(rows)
    finally:
        idx.close()


def test_ingest_killed_at_random_moments_many_times(tmp_path: Path) -> None:
    """At least 20 SIGKILLs at random moments (any stage: reading, embedding, writing a batch, writing FAISS)
    of ingests that add, change and prune files; after every one the index is consistent and searchable,
    and a final run converges to exactly the folder's files. Bounded: at most 40 runs or 240 s."""
    import hashlib

    logs = tmp_path / "logs"
    index_dir = tmp_path / "index"
    DocumentIndex.open(index_dir, create=True).close()
    versions: dict[str, set[str]] = {}
    rng = random.Random(int(os.environ.get("SOTRAG_KILL_SEED", "11")))

    def remember() -> None:
        for f in logs.glob("*.md"):
            versions.setdefault(f.name, set()).add(hashlib.sha256(f.read_bytes()).hexdigest())

    _write_logs(logs, 16)
    remember()
    kills = runs = 0
    t0 = time.monotonic()
    while kills < 20 and runs < 40 and time.monotonic() - t0 < 240:
        runs += 1
        for i in rng.sample(range(16), 5):  # change some files, drop one, bring one back: updates and prunes
            _write_logs(logs, 1, version=runs * 100 + i, sections=rng.randint(1, 4))
            (logs / "log-000.md").rename(logs / f"log-{i:03d}.md")
        (logs / f"log-{rng.randrange(16):03d}.md").unlink(missing_ok=True)
        remember()
        proc = subprocess.Popen(
            [sys.executable, "-c", BATCH_SCRIPT, str(index_dir), "6", "hash", "prune", str(logs)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        lines_before_kill = rng.randrange(0, 24)
        for _ in range(lines_before_kill):
            if not proc.stdout.readline():
                break
        time.sleep(rng.uniform(0, 0.05))
        proc.kill()
        proc.wait(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        _check_index(index_dir, versions)
    elapsed = time.monotonic() - t0
    print(f"kill loop: {kills} kills in {runs} runs, {elapsed:.1f} s")
    assert kills >= 20, f"only {kills} of {runs} runs were killed mid-ingest in {elapsed:.0f} s"
    final = subprocess.run(
        [sys.executable, "-c", BATCH_SCRIPT, str(index_dir), "6", "hash", "prune", str(logs)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    current = {f.name: {hashlib.sha256(f.read_bytes()).hexdigest()} for f in logs.glob("*.md")}
    assert _check_index(index_dir, current) == len(current)
