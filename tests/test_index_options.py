"""``DocumentIndex.open`` takes one ``IndexOptions``; its keyword arguments still work and replace its fields."""

from __future__ import annotations

from pathlib import Path

from sotrag.retrieval.chunking import ChunkingConfig
from sotrag.retrieval.index import DocumentIndex, IndexOptions, SearchConfig


def test_options_and_keywords_open_the_same_index(tmp_path: Path) -> None:
    chunking = ChunkingConfig(chunk_size=300, chunk_overlap=30)
    options = IndexOptions(
        index_type="flat", search_config=SearchConfig(mode="dense"), chunking=chunking, max_file_bytes=4000,
        auto_threshold=7, batch_chunks=3,
    )
    by_options = DocumentIndex.open(tmp_path / "a", create=True, options=options)
    by_keywords = DocumentIndex.open(
        tmp_path / "b", create=True, index_type="flat", search_config=SearchConfig(mode="dense"), chunking=chunking,
        max_file_bytes=4000, auto_threshold=7, batch_chunks=3,
    )
    for idx in (by_options, by_keywords):
        with idx:
            assert (idx.index_type, idx.auto_threshold, idx.search_config.mode) == ("flat", 7, "dense")
            assert (idx.chunking, idx.max_file_bytes, idx.batch_chunks) == (chunking, 4000, 3)
    # A keyword given with options replaces that one field; a reopened index keeps what its folder recorded.
    with DocumentIndex.open(tmp_path / "a", options=options, max_file_bytes=99) as reopened:
        assert (reopened.max_file_bytes, reopened.batch_chunks, reopened.auto_threshold) == (99, 3, 7)
    with DocumentIndex.open(tmp_path / "a") as plain:
        assert (plain.index_type, plain.auto_threshold, plain.search_config) == ("flat", 7, SearchConfig())
