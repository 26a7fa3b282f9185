"""Ingest and the CLI's path checks: one file with a name that is not UTF-8 fails alone, an empty path is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sotrag.retrieval.index import DocumentIndex


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes in names")
def test_a_file_name_that_is_not_utf8_fails_alone(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Cats\n\nCats sleep most of the day and hunt at night in the garden.\n")
    bad = Path(os.fsdecode(os.fsencode(docs) + b"/bad\xff.md"))
    bad.write_bytes(b"# Dogs\n\nDogs bark at the postman every morning.\n")
    idx = DocumentIndex.open(tmp_path / "index", create=True)
    try:
        summary = idx.ingest([docs])
    finally:
        idx.close()
    by_status = {f.status: f for f in summary.files}
    assert summary.counts["added"] == 1 and summary.counts["failed"] == 1, summary.files
    assert by_status["failed"].source.endswith("bad\\xff.md") and "UTF-8" in by_status["failed"].reason
    assert by_status["added"].source.endswith("good.md")


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", ""),
        ("ingest", "docs", "--index", ""),
        ("documents", "--index", ""),
        ("search", "cats", "-i", ""),
        ("remove", "x", "--index", ""),
        ("eval-retrieval", ""),
        ("eval-router", ""),
        ("train-router", "labels.csv", "--out", ""),
        ("eval-router", "labels.csv", "--artifact", ""),
        ("serve", "--index", ""),
        ("serve", "--api-key-file", ""),
        ("ask", "hi", "--index", ""),
    ],
)
def test_an_empty_path_is_refused(tmp_path: Path, args: tuple[str, ...]) -> None:
    """``Path("")`` is the current folder: taken as given, ``ingest ""`` indexed it and ``--index ""`` wrote there."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "labels.csv").write_text("label;request\n1;a\n")
    proc = run_cli(*args, cwd=tmp_path)
    assert_one_line_error(proc, 2, "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "labels.csv"]
