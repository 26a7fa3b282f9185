#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (real vLLM on CPU with a tiny model built on the fly).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv=${SOTRAG_VENV:-.venv}
"$venv/bin/ruff" check .
"$venv/bin/lint-imports"
# mypy resolves `sotrag.*` through a folder whose `sotrag` entry is this checkout (the package maps to ".").
mkdir -p .typecheck && ln -sfn "$PWD" .typecheck/sotrag
MYPYPATH=.typecheck "$venv/bin/mypy" -p sotrag.app -p sotrag.prompts -p sotrag.retrieval -p sotrag.kernels
# tests/ and benchmarks/ as files (one mypy run cannot take both packages and files): tests.fakes, tests.conftest...
MYPYPATH=.typecheck "$venv/bin/mypy" tests benchmarks
"$venv/bin/python" -m pytest "$@"
