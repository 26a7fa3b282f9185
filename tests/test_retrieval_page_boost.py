"""Hybrid search's page boost (``fusion.page_boost``) and the chunker's merge scope, on small inline documents."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sotrag.retrieval.chunking import ChunkingConfig, split_documents
from sotrag.retrieval.fusion import page_boost, reciprocal_rank_fusion
from sotrag.retrieval.index import DocumentIndex
from sotrag.retrieval.loaders import load_file


def test_a_page_with_two_good_chunks_passes_a_neighbour_with_one() -> None:
    # chunk 1 (page "ref") is the single best; chunks 2 and 3 are both on page "guide".
    ranked = [(1, 0.050), (2, 0.048), (3, 0.040), (4, 0.010)]
    pages = {1: "ref", 2: "guide", 3: "guide", 4: "other"}
    boosted = page_boost(ranked, pages, 0.1)
    assert [i for i, _ in boosted] == [2, 1, 3, 4]
    assert dict(boosted)[2] == pytest.approx(0.048 + 0.1 * 0.040)  # + the best *other* chunk of its page
    assert dict(boosted)[3] == pytest.approx(0.040 + 0.1 * 0.048)
    assert dict(boosted)[1] == pytest.approx(0.050)  # alone on its page: unchanged
    assert page_boost(ranked, pages, 0.0) == ranked


def test_only_one_other_chunk_counts() -> None:
    # A long page with many weak chunks gains only its best other chunk, not their sum.
    ranked = [(0, 0.050), *[(i, 0.012) for i in range(1, 30)]]
    pages = {0: "short"} | {i: "long" for i in range(1, 30)}
    boosted = dict(page_boost(ranked, pages, 0.5))
    assert boosted[0] == pytest.approx(0.050)
    assert boosted[1] == pytest.approx(0.012 + 0.5 * 0.012)
    assert max(boosted, key=lambda i: boosted[i]) == 0


def test_chunks_without_a_known_page_stand_alone() -> None:
    boosted = page_boost([(1, 0.3), (2, 0.2)], {}, 1.0)
    assert boosted == [(1, 0.3), (2, 0.2)]


GUIDE = (
    "# Guide\n\n## Usage\n\n### Start\n\nStart the service with the start command.\n\n"
    "## Errors\n\nRead the log when the service stops.\n"
)


def test_merge_scope_page_packs_sections_of_different_parents() -> None:
    docs = load_file(Path("guide.md"), GUIDE.encode())
    siblings = split_documents(docs, "markdown", "Guide", ChunkingConfig(chunk_size=1000, min_chunk=1000))
    page = split_documents(docs, "markdown", "Guide", ChunkingConfig(chunk_size=1000, min_chunk=1000,
                                                                      merge_scope="page"))
    # "Errors" is no sibling of "Usage > Start": only the page scope packs them.
    assert [c.heading for c in siblings] == ["Guide > Usage > Start", "Guide > Errors"]
    assert len(page) == 1 and page[0].heading == "Guide"  # headed by the common path of what was packed
    assert "Usage > Start\nStart the service" in page[0].text and "Errors\nRead the log" in page[0].text
    with pytest.raises(ValueError, match="merge scope"):
        ChunkingConfig(merge_scope="book")  # type: ignore[arg-type]


PAGES = {
    "backups.md": "# Backups\n\n## Nightly snapshots\n\nThe backup job copies the database to cold storage every "
    "night.\n\n## Restoring a backup\n\nTo restore, stop the service and load the latest database snapshot.\n",
    "storage.md": "# Storage\n\n## Disks\n\nThe database lives on the fast disk; cold storage holds old files.\n",
    "greeting.md": "# Greeting\n\nSay hello to every visitor at the door.\n",
}


def test_hybrid_search_is_rrf_then_page_boost(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in PAGES.items():
        (folder / name).write_text(text)
    idx = DocumentIndex.open(tmp_path / "index", create=True, chunking=ChunkingConfig(chunk_size=200, min_chunk=10))
    idx.ingest([folder])
    query = "how do I restore the database from a backup?"
    idx.search_config = dataclasses.replace(idx.search_config, page_weight=0.1)
    cfg = idx.search_config
    dense = idx.search(query, k=50, mode="dense")
    lexical = idx.search(query, k=50, mode="lexical")
    ids = {p.chunk_id: n for n, p in enumerate({p.chunk_id: p for p in dense + lexical}.values())}
    page_of = {ids[p.chunk_id]: p.metadata["doc_id"] for p in dense + lexical}
    fused = reciprocal_rank_fusion([[ids[p.chunk_id] for p in dense], [ids[p.chunk_id] for p in lexical]],
                                   [cfg.dense_weight, cfg.lexical_weight], cfg.rrf_k)
    expected = page_boost(fused, page_of, cfg.page_weight)
    got = idx.search(query, k=5, mode="hybrid")
    by_id = {n: c for c, n in ids.items()}
    want = {by_id[i]: s for i, s in expected}
    assert [p.score for p in got] == pytest.approx([s for _, s in expected[:5]], abs=1e-6)  # same order of scores
    assert all(p.score == pytest.approx(want[p.chunk_id], abs=1e-6) for p in got)  # each chunk its own score
    assert got[0].source == "backups.md"

    idx.search_config = dataclasses.replace(cfg, page_weight=0.0)
    plain = idx.search(query, k=5, mode="hybrid")
    assert [p.score for p in plain] == pytest.approx([s for _, s in fused[:5]], abs=1e-6)


def test_fusion_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from sotrag.app.config import Settings
    from sotrag.retrieval.errors import RetrievalError
    from sotrag.retrieval.index_config import SearchConfig
    from sotrag.retrieval.settings import RetrievalSettings, from_env

    assert RetrievalSettings().search_config() == SearchConfig()  # one set of defaults
    monkeypatch.setenv("SOTRAG_RETRIEVAL__PAGE_WEIGHT", "0.2")
    monkeypatch.setenv("SOTRAG_RETRIEVAL__RRF_K", "60")
    monkeypatch.setenv("SOTRAG_RETRIEVAL__EMBEDDING_MODEL", "/models/other")
    for rs in (from_env(), Settings().retrieval):
        assert rs.search_config() == dataclasses.replace(SearchConfig(), page_weight=0.2, rrf_k=60)
        assert rs.embedding_model == "/models/other"
    monkeypatch.setenv("SOTRAG_RETRIEVAL__PAGE_WEIGHT", "lots")
    with pytest.raises(RetrievalError, match="SOTRAG_RETRIEVAL__PAGE_WEIGHT"):
        from_env()


def test_cli_search_reads_the_fusion_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from sotrag.retrieval.cli import register

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in PAGES.items():
        (folder / name).write_text(text)
    # Sections long enough to stay separate chunks at the default chunking: the page has several candidates.
    filler = " Backups are kept for thirty days and checked weekly by the operator on duty." * 5
    (folder / "backups.md").write_text(PAGES["backups.md"].replace("\n\n## Restoring", filler + "\n\n## Restoring")
                                       + filler)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    ix = str(tmp_path / "index")
    assert runner.invoke(app, ["ingest", str(folder), "--index", ix]).exit_code == 0
    query = ["search", "how do I restore the database from a backup?", "--index", ix, "--json"]
    plain = json.loads(runner.invoke(app, query).stdout)  # the default: no page boost
    monkeypatch.setenv("SOTRAG_RETRIEVAL__PAGE_WEIGHT", "0.1")
    boosted = json.loads(runner.invoke(app, query).stdout)
    assert boosted[0]["score"] > plain[0]["score"]  # the best chunk's page has another candidate
    monkeypatch.setenv("SOTRAG_RETRIEVAL__PAGE_WEIGHT", "2")
    res = runner.invoke(app, query)
    assert res.exit_code == 1 and res.output.startswith("error: SOTRAG_RETRIEVAL__PAGE_WEIGHT")


def test_the_service_opens_its_index_with_the_retrieval_settings(tmp_path: Path) -> None:
    from sotrag.app.config import Settings
    from sotrag.app.factory import open_index
    from sotrag.retrieval.errors import EmbeddingModelMismatchError
    from sotrag.retrieval.settings import RetrievalSettings

    settings = Settings(retrieval=RetrievalSettings(page_weight=0.1, lexical_weight=0.7))
    idx = open_index(str(tmp_path / "index"), settings, create=True)
    assert isinstance(idx, DocumentIndex)
    assert (idx.search_config.page_weight, idx.search_config.lexical_weight) == (0.1, 0.7)
    idx.close()
    other = Settings(retrieval=RetrievalSettings(embedding_model="some/other-model"))
    with pytest.raises(EmbeddingModelMismatchError):
        open_index(str(tmp_path / "index"), other)
