"""BM25 over code identifiers: a chunk that names ``HTTPException`` is found by "exception" (store level, no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sotrag.retrieval.store import DocumentRow, Store, lexical_text


def test_lexical_text_adds_identifier_parts_once() -> None:
    code = "raise HTTPException(status_code=404)"
    assert lexical_text(code) == f"{code}\nHTTP Exception"
    assert lexical_text("JSONResponse, APIRouter, getUser; getUser").endswith("\nAPI Router JSON Response get User")
    assert lexical_text("plain words, snake_case and UPPER") == "plain words, snake_case and UPPER"
    assert lexical_text("") == ""


def _doc(doc_id: str, source: str) -> DocumentRow:
    return DocumentRow(doc_id, source, f"/x/{source}", "/x", "markdown", source, "h", 1, 1, 0.0)


def test_bm25_finds_the_parts_of_an_identifier(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    store.create_schema({"embedding_model": "none", "dim": "2"})
    vec = np.zeros((1, 2), dtype=np.float32)
    with store.transaction() as conn:
        errors = store.insert_document(
            conn, _doc("a", "errors.md"), [("a-0", 0, "Errors", "Raise an HTTPException with a status.", "t1", {})], vec
        )
        store.insert_document(
            conn, _doc("b", "other.md"), [("b-0", 0, "Other", "Nothing about failures here.", "t2", {})], vec
        )
    found = store.lexical_search("which exception do I raise for a missing item?", 5)
    assert [vid for vid, _ in found] == errors
    # the identifier itself still matches as one token, and the stored chunk text is unchanged
    assert [vid for vid, _ in store.lexical_search("HTTPException", 5)] == errors
    assert store.chunks(errors)[errors[0]].text == "Raise an HTTPException with a status."
    store.close()
