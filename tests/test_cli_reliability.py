"""Issue #11, item 9: the command line as a user meets it when things go wrong (subprocesses, real files)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import typer

from sotrag.retrieval.index import DocumentIndex
from tests.retrieval_pdf import make_pdf

DOCS = Path(__file__).parent / "data" / "retrieval_docs"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def _warning_pdf() -> bytes:
    """A PDF pypdf reads, but only after warning about its broken startxref pointer."""
    return make_pdf(["The fog horn sounds every thirty seconds in fog."]).replace(b"startxref\n", b"startxref\n9")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello " * 100)
    return buf.getvalue()


def test_ingest_with_failed_files_exits_1_with_a_summary_and_no_library_noise(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Lighthouse\n\nThe keeper winds the clockwork lamp at dusk.\n")
    (docs / "archive.md").write_bytes(_zip())
    (docs / "fog.pdf").write_bytes(_warning_pdf())
    proc = run_cli("ingest", str(docs), "--index", str(tmp_path / "index"))
    assert proc.returncode == 1, proc.stderr
    assert "2 added, 0 updated, 0 unchanged, 0 skipped, 1 failed" in proc.stdout
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert err == [
        "  failed   archive.md: binary content, not text: a ZIP archive (also docx, xlsx, epub, jar)",
        "error: 1 of 3 files failed (the others are indexed)",
    ], proc.stderr
    # the same PDF with -v: pypdf's warning is there (so the quiet run above really hid it)
    loud = run_cli("ingest", str(docs / "fog.pdf"), "--index", str(tmp_path / "index2"), "-v")
    assert loud.returncode == 0 and "startxref" in loud.stderr, loud.stderr


def test_a_damaged_store_is_one_line_for_every_command(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    idx = DocumentIndex.open(index_dir, create=True)
    idx.ingest([DOCS])
    idx.close()
    store = index_dir / "store.sqlite"
    with open(store, "r+b") as f:  # overwrite pages in the middle, as a bad disk or a stray write would
        f.seek(2 * 4096)
        f.write(os.urandom(3 * 4096))
    for args in (
        ["documents"],
        ["search", "roses"],
        ["remove", "garden/roses.md"],
        ["ingest", str(DOCS)],
    ):
        proc = run_cli(*args, "--index", str(index_dir))
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert "damaged" in run_cli("documents", "--index", str(index_dir)).stderr


def test_unexpected_failures_are_one_line_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sotrag.retrieval.cli import run_app

    app = typer.Typer()

    @app.command()
    def boom(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
        raise KeyError("a bug somewhere deep")

    monkeypatch.setattr(sys, "argv", ["sotrag"])
    with pytest.raises(SystemExit) as done:
        run_app(app)
    assert done.value.code == 1
    assert capsys.readouterr().err == (
        "error: unexpected KeyError: 'a bug somewhere deep' (run again with -v for the details)\n"
    )
    monkeypatch.setattr(sys, "argv", ["sotrag", "-v"])
    with pytest.raises(KeyError):
        run_app(app)


def test_version() -> None:
    from importlib.metadata import version

    from typer.testing import CliRunner

    from sotrag.app.cli.root import app

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"sotrag {version('sotrag')}"


def test_sources_are_shown_under_the_answer() -> None:
    from rich.console import Console

    from sotrag.app.cli.ask import AnswerView
    from sotrag.app.events import Source, SourcesEvent

    out = io.StringIO()
    view = AnswerView(Console(file=out, width=80), auto_refresh=False)
    view.update(
        SourcesEvent(
            sources=[
                Source(n=1, source="garden/roses.md", heading="Care > Black spot", score=0.91, snippet="..."),
                Source(n=2, source="kitchen/notes.txt", score=0.5, snippet="..."),
            ]
        )
    )
    view.finish()
    text = " ".join(out.getvalue().split())
    assert "sources [1] garden/roses.md > Care > Black spot 0.910 [2] kitchen/notes.txt 0.500" in text


def test_ingest_does_not_follow_symlinks_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(DOCS / "kitchen", outside)
    docs = tmp_path / "docs"
    shutil.copytree(DOCS / "garden", docs)
    (docs / "bread.md").symlink_to(outside / "bread.md")
    (docs / "kitchen").symlink_to(outside, target_is_directory=True)
    proc = run_cli("ingest", str(docs), "--index", str(tmp_path / "index"), "--json")
    assert proc.returncode == 0, proc.stderr
    import json

    files = {f["source"]: (f["status"], f["reason"]) for f in json.loads(proc.stdout)["files"]}
    assert files == {
        "roses.md": ("added", ""),
        "tomatoes.md": ("added", ""),
        "bread.md": ("skipped", "symlink to outside the folder"),
    }
