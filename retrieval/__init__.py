"""Loading, chunking, embedding, the FAISS index and document store, and search.

Kept import-light: heavy modules (LangChain, FAISS, sentence-transformers) are imported by the submodules
that need them, so ``sotrag.retrieval.types`` stays cheap for the pipeline.
"""
