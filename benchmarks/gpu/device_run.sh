#!/bin/bash
# On the GPU machine, from the checkout's root, after `source .device-stage/vd/stage_on_device.sh`:
#   bash .device-stage/bench/gpu/device_run.sh engine7b hf7b engine1.5b fp8 pipeline-smoke pipeline
# Each part writes its JSON under $OUT and its log to $OUT/log.txt; a short table is printed at the end.
set -u
B=.device-stage/bench
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ ! -f /tmp/site/.bench_whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $B/whl/*.whl && touch /tmp/site/.bench_whl
fi
mkdir -p /tmp/pp && ln -sfn "$PWD/$B/src/sotrag" /tmp/pp/sotrag
export PYTHONPATH=/tmp/pp:${PYTHONPATH:-}
[ -f "$OUT/gpu.txt" ] || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt"
# the host CPU beside the GPU: SoT's speed-up depends on it (vLLM's engine core runs its scheduler there)
[ -f "$OUT/gpu.txt" ] && { lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|CPU max MHz)' ; nproc; } >> "$OUT/gpu.txt"
model() {  # model() SHAPE -> /tmp/mSHAPE with config, tokenizer, chat template
  [ -f /tmp/m$1/tokenizer.json ] || python3 $B/gpu/make_model_dir.py /tmp/m$1 --shape $1 >> "$OUT/log.txt" 2>&1
}
model_en() {  # model_en SHAPE -> /tmp/enSHAPE: the tokenizer also trained on everyday English (issue 22)
  [ -f /tmp/en$1/tokenizer.json ] || python3 $B/gpu/make_model_dir.py /tmp/en$1 --shape $1 \
    --extra-corpus $B/data/english >> "$OUT/log.txt" 2>&1
}
run() {  # run SECONDS CMD...: bounded, logged
  local t=$1; shift
  echo "== $(date -u +%T) $*" | tee -a "$OUT/log.txt"
  timeout -k 10 "$t" "$@" >> "$OUT/log.txt" 2>&1; local rc=$?
  echo "== rc=$rc" | tee -a "$OUT/log.txt"
}
for part in "$@"; do
  case $part in
    engine7b) model 7b; run ${T_ENGINE7B:-330} python3 $B/gpu/engine_bench.py --model /tmp/m7b --label 7b-bf16 \
                --parts steps,target,headline,grid --grid-contexts 1500 --out "$OUT/engine_7b.json" ;;
    hf7b) model 7b; run ${T_HF:-220} python3 $B/hf_baseline.py --model /tmp/m7b --out "$OUT/hf_7b.json" ;;
    engine1.5b) model 1.5b; run ${T_ENGINE15:-150} python3 $B/gpu/engine_bench.py --model /tmp/m1.5b \
                --label 1.5b-bf16 --parts steps,target,headline --out "$OUT/engine_1.5b.json" ;;
    fp8) model 7b; run ${T_FP8:-180} python3 $B/gpu/engine_bench.py --model /tmp/m7b --label 7b-fp8 \
                --quantization fp8 --kv-cache-dtype fp8 --parts steps,target,headline --out "$OUT/engine_7b_fp8.json" ;;
    pipeline-smoke) model 7b; run ${T_SMOKE:-200} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b \
                --label 7b-smoke --parts headline --reps 2 --questions $B/data/vicuna80_questions.csv \
                --out "$OUT/pipeline_smoke.json" ;;
    pipeline-a) model 7b; run ${T_PIPE:-560} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b --label 7b-bf16 \
                --parts ${PIPE_PARTS_A:-headline,table1,table2} --questions $B/data/vicuna80_questions.csv \
                --out "$OUT/pipeline_7b_a.json" ${PIPE_ARGS_A:-} ;;
    pipeline-b) model 7b; run ${T_PIPE:-560} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b --label 7b-bf16 \
                --parts ${PIPE_PARTS_B:-table4,nocache} --questions $B/data/vicuna80_questions.csv \
                --out "$OUT/pipeline_7b_b.json" ${PIPE_ARGS_B:-} ;;
    pipeline-eager) model 7b; run ${T_PIPE:-560} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b --label 7b-eager \
                --eager --parts headline,table4 --load-modes sot --rates 1,2,4,8 --arrivals 32 \
                --questions $B/data/vicuna80_questions.csv --out "$OUT/pipeline_7b_eager.json" ;;
    load-direct) model 7b; run ${T_PIPE:-400} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b --label 7b-direct \
                --parts table4direct --load-modes sot,normal --rates 1,2,4,8 --arrivals 32 \
                --out "$OUT/pipeline_7b_direct_load.json" ;;
    load-auto) model 7b; run ${T_PIPE:-400} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b --label 7b-auto \
                --parts table4 --load-modes "" --router $B/data/vicuna80_router_p.json --rates 1,2,4,8,16 --arrivals 32 \
                --questions $B/data/vicuna80_questions.csv --out "$OUT/pipeline_7b_auto.json" ;;
    # issue 13 (sot-speed): headline (+eager), table4 normal/sot/sot-eager/auto at true Poisson rates, engine sweep
    speed) model 7b; run ${T_SPEED:-520} python3 $B/gpu/pipeline_bench.py --model /tmp/m7b --label ${LABEL:-7b-speed} \
                --parts ${SPEED_PARTS:-headline,table4,sweep} --questions $B/data/vicuna80_questions.csv \
                --router $B/data/vicuna80_router_p.json --rates ${RATES:-1,2,4,8,16} --arrivals ${ARRIVALS:-24} \
                --load-modes ${MODES:-normal,sot,sot-eager} --out "$OUT/speed_${LABEL:-7b-speed}.json" ${SPEED_ARGS:-} ;;
    speed1.5b) model 1.5b; run ${T_SPEED15:-200} python3 $B/gpu/pipeline_bench.py --model /tmp/m1.5b \
                --label 1.5b-speed --parts table4 --questions $B/data/vicuna80_questions.csv \
                --router $B/data/vicuna80_router_p.json --rates ${RATES15:-1,4,16} --arrivals ${ARRIVALS:-24} \
                --load-modes normal,sot --out "$OUT/speed_1.5b.json" ${SPEED_ARGS:-} ;;
    # issue 22: recorded real answers replayed through the pipeline (normal / sot / sot-eager), the fixed 7 x 80
    # shape in the same run, then (REAL_PARTS=load) Poisson load on real shapes
    real) model_en 7b; run ${T_REAL:-540} python3 $B/gpu/real_shapes.py --model /tmp/en7b \
                --corpus $B/data/real_answers.jsonl --machine ${LABEL:-real} --parts ${REAL_PARTS:-fixed,real} \
                --router $B/data/vicuna80_router_p.json --out "$OUT/real_${LABEL:-real}.json" ${REAL_ARGS:-} ;;
    # the fixed shape on an engine WITHOUT the replay processor: what loading it changes (compare with real's rows)
    plain) model_en 7b; run ${T_PLAIN:-150} python3 $B/gpu/real_shapes.py --model /tmp/en7b --no-replay \
                --corpus $B/data/real_answers.jsonl --machine ${LABEL:-real}-plain --parts fixed \
                --fixed-reps ${PLAIN_REPS:-3} --out "$OUT/plain_${LABEL:-real}.json" ;;
    *) echo "unknown part $part" ;;
  esac
done
echo "==== summary"; grep -E '^\[|^== rc|Error|error:' "$OUT/log.txt" | grep -v '^\[W\|INFO\|WARNING' | tail -n 80
