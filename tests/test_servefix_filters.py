"""Filter values are bounded on every surface: a glob over SQLite's pattern limit (50,000 bytes) was a 500 over
REST (logged as a damaged index) and an "index is damaged" error in the library and the CLI. Now REST answers a
422 naming the field, before anything streams; the library and the CLI refuse it in one line as the caller's
input, never as index corruption."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sotrag.retrieval.errors import IndexCorruptError, RetrievalError
from sotrag.retrieval.index import DocumentIndex
from sotrag.retrieval.store import MAX_FILTER_LENGTH
from tests.scripted_app import scripted_client

DOCS = Path(__file__).parent / "data" / "retrieval_docs"
LONG = [
    ("heading", "*" * 60000),  # over SQLite's own limit
    ("source", "*" * 60000),
    ("source", "garden/" + "x" * 60000),  # a folder (no wildcard): matched as folder/* too
    ("heading", "é" * (MAX_FILTER_LENGTH + 1)),  # just over the bound
    ("doc_id", "d" * (MAX_FILTER_LENGTH + 1)),
    ("kind", "k" * (MAX_FILTER_LENGTH + 1)),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> DocumentIndex:
    where = tmp_path_factory.mktemp("servefix-filters")
    shutil.copytree(DOCS, where / "docs")
    idx = DocumentIndex.open(where / "index", create=True)
    idx.ingest([where / "docs"])
    return idx


@pytest.mark.parametrize(("key", "value"), LONG)
def test_the_library_refuses_a_long_filter_as_input_not_corruption(
    index: DocumentIndex, key: str, value: str
) -> None:
    for mode in ("dense", "lexical", "hybrid"):
        with pytest.raises(RetrievalError) as caught:
            index.search("roses in winter?", k=3, filters={key: value}, mode=mode)
        assert not isinstance(caught.value, IndexCorruptError)
        message = str(caught.value)
        assert f"filter {key!r}" in message and str(MAX_FILTER_LENGTH) in message and "\n" not in message
    assert index.search("roses in winter?", k=3, filters={key: "*"}) is not None  # still usable


def test_a_filter_at_the_bound_is_searched(index: DocumentIndex) -> None:
    assert index.search("roses", k=3, filters={"heading": "*" * MAX_FILTER_LENGTH}, mode="lexical") is not None


def test_sqlite_refusing_a_pattern_is_the_callers_input(index: DocumentIndex) -> None:
    """Past the length check (a caller using the store directly), SQLite's own refusal is a ValueError."""
    with pytest.raises(ValueError, match="filter SQLite cannot match"):
        _filter_ids_raw(index, "*" * 60000)


def _filter_ids_raw(index: DocumentIndex, pattern: str) -> list[int]:
    store = index._store
    original = store._filter_sql
    try:
        store._filter_sql = staticmethod(lambda filters: ("c.heading GLOB ?", [pattern]))  # type: ignore[method-assign]
        return store.filter_ids({"heading": pattern})
    finally:
        store._filter_sql = original  # type: ignore[method-assign]


def test_the_cli_search_refuses_a_long_filter_in_one_line(index: DocumentIndex) -> None:
    import typer
    from typer.testing import CliRunner

    from sotrag.retrieval.cli import register

    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["search", "roses", "--index", str(index.directory), "--filter",
                                   "heading=" + "*" * 60000])
    assert res.exit_code == 1, res.output
    line = res.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "damaged" not in line and "heading" in line


@pytest.mark.parametrize(("key", "value"), LONG)
@pytest.mark.parametrize("stream", [False, True])
async def test_rest_answers_422_naming_the_field_before_any_stream(key: str, value: str, stream: bool) -> None:
    async with scripted_client() as (c, engine):
        r = await c.post("/v1/answer", json={"question": "roses in winter?", "mode": "normal",
                                             "filters": {key: value}, "stream": stream})
        assert r.status_code == 422, r.text[:300]
        assert r.headers["content-type"].startswith("application/json")
        detail = r.json()["detail"]
        assert detail.startswith(f"filters.{key}:") and "\n" not in detail and "Traceback" not in r.text
        assert not engine.requests
        ok = await c.post("/v1/answer", json={"question": "roses in winter?", "mode": "normal",
                                              "filters": {key: "x"}})
        assert ok.status_code == 200, ok.text[:300]
