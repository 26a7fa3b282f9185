#!/bin/bash
# Copies what the GPU run needs into <checkout>/.device-stage/bench (git-ignored), beside the vLLM stage
# (.device-stage/vd, from ../shared/device/build_stage.sh). The device tool sends the checkout it was started
# in, so run this with that checkout's root as the argument; this worktree's package sources go along.
#   PYTHON=.venv/bin/python PYTHONPATH=<folder holding a sotrag link> bash benchmarks/gpu/stage.sh <checkout root> [QUESTIONS_CSV]
# then run on the device with carry [".device-stage/vd", ".device-stage/bench"]:
#   source .device-stage/vd/stage_on_device.sh && bash .device-stage/bench/gpu/device_run.sh PART...
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)          # this worktree's root (the sotrag package)
DEST=${1:?checkout root}/.device-stage/bench
QUESTIONS=${2:-$1/../shared/data/sot/vicuna80_questions.csv}  # default: the shared data beside the checkout
rm -rf "$DEST"; mkdir -p "$DEST/src/sotrag" "$DEST/whl" "$DEST/data"
cp -r "$SRC/benchmarks/gpu" "$DEST/gpu"; cp "$SRC/benchmarks/hf_baseline.py" "$DEST/"
rm -rf "$DEST/gpu/__pycache__"
for d in __init__.py app prompts retrieval kernels; do cp -r "$SRC/$d" "$DEST/src/sotrag/"; done
find "$DEST/src" -name __pycache__ -prune -exec rm -rf {} +
# the router's trained head: the GPU runs use router_probs.py's precomputed probabilities instead, and the carried
# stage must stay under the device's 64 MiB together with the checkout
rm -f "$DEST/src/sotrag/app/routing/assets/router.npz"
[ -f "$QUESTIONS" ] && cp "$QUESTIONS" "$DEST/data/"
# real shapes (issue 22): the recorded answers the replay writes, and the everyday English the 7B tokenizer is
# trained on besides Python's documentation (question sets and prose; never the replayed answers)
SHARED=${SHARED:-$(dirname "$QUESTIONS")/..}
cp "$SRC/tests/data/real_answers.jsonl" "$DEST/data/" 2>/dev/null || echo "no tests/data/real_answers.jsonl: real shapes not staged"
mkdir -p "$DEST/data/english"
for f in sot/lima_router_labels.csv sot/wizardlm_questions.csv; do [ -f "$SHARED/$f" ] && cp "$SHARED/$f" "$DEST/data/english/"; done
[ -d "$SHARED/corpus/fastapi-docs" ] && cp -r "$SHARED/corpus/fastapi-docs" "$DEST/data/english/"
# mode=auto under load: the trained router's question probabilities, computed here (router_probs.py)
[ -f "$QUESTIONS" ] && ${PYTHON:-python3} "$SRC/benchmarks/gpu/router_probs.py" "$QUESTIONS" "$DEST/data/vicuna80_router_p.json" 2>/dev/null | tail -1
# sotrag.app.config needs pydantic-settings (pydantic itself travels with the vLLM stage). vLLM 0.24 also needs,
# beyond the shared recipe's wheels.txt: lm-format-enforcer (+ interegular) for ANY structured-output request
# (SamplingParams.verify imports every backend's validator), and compressed-tensors (+ loguru) for ANY
# quantization= setting (the quantization registry imports it), e.g. fp8.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform any -d "$DEST/whl" pydantic-settings==2.16.3 python-dotenv==1.2.4 lm-format-enforcer==0.11.3 \
  interegular==0.3.3 compressed-tensors==0.17.0 loguru==0.7.3
du -sh "$DEST"
