"""Different upload names never land on one stored name: ``team-a/notes.md`` and ``team-b/notes.md`` used to
both be stored as ``uploads/notes.md``, the second "updating" (overwriting) the first. The same name sent again
still updates its upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotrag.app.serving.documents import Documents, _safe_name
from sotrag.retrieval.index import DocumentIndex

NAMES = ["notes.md", "team-a/notes.md", "team-b/notes.md", "team-a\\notes.md", "C:\\team-a\\notes.md", "a:b.md",
         "a_b.md", "notes-1234abcd.md", "x/notes-1234abcd.md", "../../notes.md", "/etc/notes.md", ".notes.md"]


def test_distinct_names_get_distinct_stored_names_and_stay_inside() -> None:
    stored = [_safe_name(n) for n in NAMES]
    assert len(set(stored)) == len(NAMES), dict(zip(NAMES, stored, strict=True))
    assert all("/" not in s and "\\" not in s and not s.startswith(".") for s in stored)
    assert [_safe_name(n) for n in NAMES] == stored  # the same name again: the same stored name
    assert _safe_name("notes.md") == "notes.md" and _safe_name("report 2024.md") == "report 2024.md"


@pytest.fixture
def index(tmp_path: Path) -> DocumentIndex:
    return DocumentIndex.open(tmp_path / "index", create=True)


async def test_two_teams_notes_are_two_documents_and_a_resend_updates(index: DocumentIndex, tmp_path: Path) -> None:
    docs = Documents(1 << 20, lambda: None)

    async def send(filename: str, text: str) -> list[tuple[str, str]]:
        src = tmp_path / f"src-{len(list(tmp_path.iterdir()))}"
        src.write_text(text)
        response = await docs.add(index, [(docs.check_upload(filename), src)])
        return [(f.source, f.status) for f in response.files]

    (a_source, a_status), = await send("team-a/notes.md", "# Alpha\n\nalpha team notes about lighthouses\n")
    (b_source, b_status), = await send("team-b/notes.md", "# Beta\n\nbeta team notes about bread\n")
    assert (a_status, b_status) == ("added", "added") and a_source != b_source
    assert {d.source for d in index.list_documents()} == {a_source, b_source}
    stored = Path(index.directory) / a_source
    assert "alpha" in stored.read_text()
    (again, status), = await send("team-a/notes.md", "# Alpha\n\nalpha team notes, revised\n")
    assert (again, status) == (a_source, "updated") and "revised" in stored.read_text()
