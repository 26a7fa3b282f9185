"""The torch vector backend behind ``DocumentIndex`` (``VectorSearch("torch", device)``): its device copy
follows ingest, update and removal, answers like the FAISS path, and batches per-point retrievals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from sotrag.retrieval.index import DocumentIndex, VectorSearch

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    topics = {
        "bread.md": "# Bread\n\nSourdough needs a starter, flour, water and salt. Bake at 250 C with steam.",
        "tea.md": "# Tea\n\nGreen tea brews at 80 C for two minutes; black tea at 95 C for four.",
        "bikes.md": "# Bikes\n\nA chain needs oil every few hundred kilometres; check tyre pressure weekly.",
        "python.md": "# Python\n\nA virtual environment keeps packages apart: python -m venv .venv.",
        "sleep.md": "# Sleep\n\nKeep a regular bedtime, a dark cool room, and no screens the hour before.",
    }
    for name, text in topics.items():
        _write(d, name, text)
    return d


def _dense_ids(idx: DocumentIndex, queries: list[str], k: int = 4) -> list[list[str]]:
    return [[p.chunk_id for p in found] for found in idx.search_many(queries, k, mode="dense")]


@pytest.mark.parametrize("device", DEVICES)
def test_document_index_mirror_stays_in_step(tmp_path: Path, docs: Path, device: str) -> None:
    faiss_dir, torch_dir = tmp_path / "faiss", tmp_path / "torch"
    plain = DocumentIndex.open(faiss_dir, create=True)
    gpu = DocumentIndex.open(torch_dir, create=True, vector_search=VectorSearch("torch", device))
    queries = ["how hot to bake bread", "brewing green tea", "bike chain oil", "sleep better at night"]
    for idx in (plain, gpu):
        idx.ingest([docs])
    assert gpu.stats()["vector_backend"] == "torch" and gpu.stats()["vector_device_bytes"] > 0
    assert _dense_ids(gpu, queries) == _dense_ids(plain, queries)
    mirror_before = gpu._vectors.mirror

    # update one file, add one, remove one: the same change through both indexes
    _write(docs, "tea.md", "# Tea\n\nOolong tea brews at 90 C; pu-erh at 100 C, rinsed first.")
    _write(docs, "knots.md", "# Knots\n\nA bowline makes a fixed loop that will not slip under load.")
    for idx in (plain, gpu):
        idx.ingest([docs])
        idx.remove("bikes.md")
    assert gpu._vectors.mirror is mirror_before, "the mirror is updated in place, not rebuilt"
    assert gpu._vectors.mirror.ntotal == gpu._store.count_chunks()
    queries += ["oolong temperature", "a loop that does not slip"]
    assert _dense_ids(gpu, queries) == _dense_ids(plain, queries)
    assert all("bikes" not in p.source for found in gpu.search_many(queries, 10, mode="dense") for p in found)

    # a second instance writing to the same folder: the first one's mirror is stale and gets rebuilt
    other = DocumentIndex.open(torch_dir)
    _write(docs, "sleep.md", "# Sleep\n\nNaps shorter than twenty minutes avoid grogginess.")
    other.ingest([docs])
    plain.ingest([docs])
    assert _dense_ids(gpu, ["short naps"]) == _dense_ids(plain, ["short naps"])
    assert gpu._vectors.mirror is not mirror_before
    for idx in (plain, gpu, other):
        idx.close()


def test_search_many_equals_search_and_aretrieve_batches(tmp_path: Path, docs: Path) -> None:
    idx = DocumentIndex.open(tmp_path / "ix", create=True, vector_search=VectorSearch("torch", "cpu"))
    idx.ingest([docs])
    queries = ["sourdough starter", "tea temperature", "venv packages"]
    for mode in ("dense", "hybrid", "lexical"):
        many = idx.search_many(queries, 3, mode=mode)
        assert [[p.chunk_id for p in r] for r in many] == [
            [p.chunk_id for p in idx.search(q, 3, mode=mode)] for q in queries
        ]
    calls: list[int] = []
    real = idx.search_many

    def counting(qs, *a, **kw):
        calls.append(len(qs))
        return real(qs, *a, **kw)

    idx.search_many = counting  # type: ignore[method-assign,assignment]

    async def points() -> list[list[str]]:
        found = await asyncio.gather(*(idx.aretrieve(q, 3) for q in queries))
        return [[p.chunk_id for p in r] for r in found]

    got = asyncio.run(points())
    assert calls == [3], "the concurrent retrievals ran as one batched search"
    assert got == [[p.chunk_id for p in r] for r in real(queries, 3)]
    idx.close()


def test_vector_search_config_is_validated() -> None:
    with pytest.raises(ValueError, match="backend"):
        VectorSearch("annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="storage"):
        VectorSearch("torch", "cpu", "fp8")  # type: ignore[arg-type]
    assert VectorSearch().backend == "faiss"


def test_settings_pick_the_backend_and_lower_vllm_memory(tmp_path: Path, docs: Path, monkeypatch) -> None:
    """SOTRAG_VECTOR_SEARCH__BACKEND=torch opens the torch backend; on CUDA vLLM gets the index's share less."""
    from sotrag.app.config import Settings
    from sotrag.app.factory import open_index, share_gpu_with_index

    monkeypatch.setenv("SOTRAG_VECTOR_SEARCH__BACKEND", "torch")
    monkeypatch.setenv("SOTRAG_VECTOR_SEARCH__DEVICE", "cpu")
    settings = Settings()
    assert settings.vector_search.backend == "torch" and Settings.model_fields["vector_search"].default_factory
    idx = open_index(str(tmp_path / "ix"), settings, create=True)
    assert isinstance(idx, DocumentIndex) and idx.vector_search == VectorSearch("torch", "cpu")
    idx.ingest([docs])
    assert idx.device_reserved_bytes() > 0
    assert share_gpu_with_index(settings, idx) is settings  # a CPU copy takes nothing from the GPU

    on_gpu = {
        "vector_search": settings.vector_search.model_copy(update={"device": "cuda"}),
        "engine": settings.engine.model_copy(update={"gpu_memory_utilization": 0.99}),
    }
    cuda = settings.model_copy(update=on_gpu)
    total = 2**20  # a tiny "GPU", so that this tiny index's share shows
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (total, total))
    lowered = share_gpu_with_index(cuda, idx)
    share = idx.device_reserved_bytes() / total + 0.02
    assert 0.02 < share < 0.9
    assert lowered.engine.gpu_memory_utilization == pytest.approx(1 - share)
    assert lowered.engine.gpu_memory_utilization < cuda.engine.gpu_memory_utilization
    # (_env_file: pydantic-settings' own init option, unknown to mypy without the pydantic plugin)
    assert Settings(_env_file=None).vector_search.backend == "torch"  # type: ignore[call-arg]
    monkeypatch.delenv("SOTRAG_VECTOR_SEARCH__BACKEND")
    assert Settings(_env_file=None).vector_search.backend == "faiss"  # type: ignore[call-arg]
    idx.close()
