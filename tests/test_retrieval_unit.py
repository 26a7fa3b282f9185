"""Retrieval pieces that need no embedding model: loaders, chunking, ids, FTS queries, fusion, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sotrag.retrieval.chunking import ChunkingConfig, make_chunk_id, make_doc_id, split_documents
from sotrag.retrieval.errors import InputPathError, LoadError, RetrievalError
from sotrag.retrieval.evaluation import dedupe_documents, load_questions, question_metrics
from sotrag.retrieval.fusion import mmr, reciprocal_rank_fusion
from sotrag.retrieval.loaders import decode_text, discover, load_file
from sotrag.retrieval.store import fts_query

DOCS = Path(__file__).parent / "data" / "retrieval_docs"


def test_discover_relative_sources_and_globs() -> None:
    sources = sorted(f.source for f in discover([DOCS]))
    assert sources == [
        "garden/roses.md", "garden/tomatoes.md", "kitchen/bread.md", "kitchen/coffee.html", "kitchen/notes.txt"
    ]
    assert sorted(f.source for f in discover([DOCS], include=["*.md"], exclude=["roses*"])) == [
        "garden/tomatoes.md", "kitchen/bread.md"
    ]
    single = list(discover([DOCS / "garden" / "roses.md"]))
    assert [f.source for f in single] == ["roses.md"]


def test_discover_missing_path() -> None:
    with pytest.raises(InputPathError, match="does not exist"):
        list(discover(["/no/such/folder"]))


def test_markdown_chunks_keep_heading_path() -> None:
    path = DOCS / "garden" / "tomatoes.md"
    docs = load_file(path, path.read_bytes())
    chunks = split_documents(docs, "markdown", "Growing Tomatoes", ChunkingConfig(chunk_size=400, min_chunk=100))
    headings = [c.heading for c in chunks]
    assert "Growing Tomatoes > Watering" in headings
    assert any(h.startswith("Growing Tomatoes > Pests and diseases") for h in headings)
    hornworm = next(c for c in chunks if "hornworm" in c.text.lower())
    assert "Pests and diseases" in hornworm.heading
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= 400 for c in chunks)
    assert chunks[1].embed_text.startswith(chunks[1].heading)


def test_small_sections_are_merged_under_their_parent() -> None:
    text = "# Guide\n\n## A\n\nshort a\n\n## B\n\nshort b\n\n## C\n\n" + "long c " * 200
    docs = load_file(Path("x.md"), text.encode())
    chunks = split_documents(docs, "markdown", "Guide", ChunkingConfig(chunk_size=1000, min_chunk=300))
    assert chunks[0].heading == "Guide"
    assert "short a" in chunks[0].text and "B\nshort b" in chunks[0].text


def test_html_and_text_and_pdf_loading(tmp_path: Path) -> None:
    from retrieval_pdf import make_pdf

    html = DOCS / "kitchen" / "coffee.html"
    docs = load_file(html, html.read_bytes())
    assert "sixteen grams" in docs[0].page_content and "console.log" not in docs[0].page_content
    assert docs[0].metadata["title"] == "Brewing Coffee"
    pdf = tmp_path / "manual.pdf"
    pdf.write_bytes(make_pdf(["The lighthouse keeper logs the fog horn hours."]))
    pages = load_file(pdf, pdf.read_bytes())
    assert "fog horn" in pages[0].page_content
    chunks = split_documents(pages, "pdf", "manual", ChunkingConfig())
    assert chunks[0].heading == "manual > page 1" and chunks[0].metadata["page"] == 1


def test_bad_pdfs_fail_with_reason(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    from retrieval_pdf import make_pdf

    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(LoadError, match="PDF"):
        load_file(corrupt, corrupt.read_bytes())
    plain = tmp_path / "plain.pdf"
    plain.write_bytes(make_pdf(["secret text"]))
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("hunter2")
    enc = tmp_path / "enc.pdf"
    writer.write(str(enc))
    with pytest.raises(LoadError, match="encrypted"):
        load_file(enc, enc.read_bytes())


def test_unsupported_type_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="unsupported"):
        load_file(Path("image.png"), b"\x89PNG")


def test_decode_never_crashes() -> None:
    assert decode_text("héllo".encode())[0] == "héllo"
    text, enc = decode_text("café crème brûlée, à bientôt".encode("latin-1"))
    assert "caf" in text and enc != "utf-8"
    text, _ = decode_text(b"\xff\xfe\xfa garbage \x80\x81")
    assert isinstance(text, str)


def test_ids_are_stable() -> None:
    assert make_doc_id("a/b.md") == make_doc_id("a/b.md") != make_doc_id("a/c.md")
    a = make_chunk_id(make_doc_id("a.md"), 3, "text")
    assert a == make_chunk_id(make_doc_id("a.md"), 3, "text")
    assert a != make_chunk_id(make_doc_id("a.md"), 3, "other text")
    assert a.startswith(make_doc_id("a.md"))


def test_fts_query_is_safe_and_drops_stopwords() -> None:
    assert fts_query("How do I use the CORS middleware?") == '"cors" OR "middleware"'
    assert fts_query('weird "quotes" AND NOT (parens) *') == '"weird" OR "quotes" OR "not" OR "parens"'
    assert fts_query("the of") == '"the" OR "of"'
    assert fts_query("???") == ""


def test_rrf_and_mmr() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])
    assert [i for i, _ in fused][:2] == [1, 3]
    weighted = reciprocal_rank_fusion([[1, 2], [2, 1]], weights=[1.0, 3.0])
    assert weighted[0][0] == 2
    q = np.array([1.0, 0.0])
    cands = np.array([[1.0, 0.0], [0.999, 0.0447], [0.6, 0.8]])
    cands = cands / np.linalg.norm(cands, axis=1, keepdims=True)
    assert mmr(q, cands, 2, lambda_mult=0.3) == [0, 2]  # the near-duplicate is passed over
    assert mmr(q, cands, 2, lambda_mult=1.0) == [0, 1]


def test_document_level_metrics() -> None:
    docs = dedupe_documents(["a.md", "a.md", "b.md", "c.md", "a.md"])
    assert docs == ["a.md", "b.md", "c.md"]
    m = question_metrics(docs, ["b.md"])
    assert m["recall@1"] == 0 and m["recall@5"] == 1 and m["mrr@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx(1 / np.log2(3))
    m2 = question_metrics(docs, ["a.md", "c.md"])
    assert m2["recall@1"] == 0.5 and m2["ndcg@10"] == pytest.approx((1 + 0.5) / (1 + 1 / np.log2(3)))
    assert question_metrics([], ["x"])["ndcg@10"] == 0


def test_load_questions_errors(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"question": "q?", "relevant": ["a.md"]}) + "\n\n")
    assert load_questions(good)[0].relevant == ("a.md",)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?"}\n')
    with pytest.raises(RetrievalError, match="bad.jsonl:1"):
        load_questions(bad)
    with pytest.raises(RetrievalError, match="not found"):
        load_questions(tmp_path / "missing.jsonl")
