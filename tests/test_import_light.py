"""The GPU benchmark stage carries vLLM and sotrag's engine side, not LangChain, FAISS or sentence-transformers:
the settings, the pipeline and the vLLM engine must import without them (a module-level LangChain import in the
retrieval settings once stopped every GPU benchmark at import)."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import builtins
real = builtins.__import__
def blocked(name, *args, **kwargs):
    if name.split('.')[0] in {'langchain_core', 'langchain_text_splitters', 'langchain_community', 'faiss',
                              'sentence_transformers'}:
        raise ImportError('not in the GPU stage: ' + name)
    return real(name, *args, **kwargs)
builtins.__import__ = blocked
import sotrag.app.config, sotrag.app.pipeline, sotrag.app.engines.vllm, sotrag.app.engines.replay
print('imported')
"""


def test_the_engine_side_imports_without_langchain_faiss_or_sentence_transformers() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported" in done.stdout
