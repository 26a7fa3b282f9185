"""Several sotrag replicas share one index folder: one process writes, another, already open, reads.

The reader never reopens the index: each search checks the store's generation and loads the new FAISS
generation when a writer has committed one (``IndexVectors.current``), so what another process
ingests or removes is searchable at once, dense and lexical alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sotrag.retrieval.index import DocumentIndex

# The writer replica: one process that ingests or removes on each line of its stdin, and answers "ok".
WRITER = """
import sys
from sotrag.retrieval.index import DocumentIndex
index = DocumentIndex.open(sys.argv[1])
print("ok", flush=True)
for line in sys.stdin:
    verb, arg = line.split(maxsplit=1)
    index.ingest([arg.strip()]) if verb == "ingest" else index.remove(arg.strip())
    print("ok", flush=True)
"""


def _ask(writer: subprocess.Popen[str], command: str) -> None:
    assert writer.stdin is not None and writer.stdout is not None
    if command:
        writer.stdin.write(command + "\n")
        writer.stdin.flush()
    assert writer.stdout.readline().strip() == "ok", writer.stderr.read() if writer.stderr else ""


def test_a_reader_sees_the_writer_processs_new_generations(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "roses.md").write_text("# Roses\n\nPrune roses in late winter and feed them with compost in spring.\n")
    (docs / "kayaks.md").write_text("# Kayaks\n\nA sea kayak needs a spray deck, a paddle float and a bilge pump.\n")
    index_dir = tmp_path / "index"
    reader = DocumentIndex.open(index_dir, create=True)  # this test process is the reader replica
    reader.ingest([docs / "roses.md"])
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(index_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        _ask(writer, "")  # started
        assert {p.source for p in reader.search("when to prune roses", k=3)} == {"roses.md"}
        first = reader.stats()["generation"]

        _ask(writer, f"ingest {docs / 'kayaks.md'}")  # another process writes; the reader does not reopen
        for mode in ("dense", "lexical", "hybrid"):
            hits = reader.search("what does a sea kayak need", k=1, mode=mode)
            assert hits and hits[0].source == "kayaks.md", (mode, hits)
        assert reader.stats()["generation"] > first
        assert reader.stats()["documents"] == 2

        _ask(writer, "remove roses.md")
        assert all(p.source != "roses.md" for p in reader.search("when to prune roses", k=3))
        assert [d.source for d in reader.list_documents()] == ["kayaks.md"]
    finally:
        if writer.stdin:
            writer.stdin.close()
        writer.wait(timeout=60)
        reader.close()
