#!/usr/bin/env bash
# D-BETA performance suite for ONE NVIDIA H100 (issue #7): runs every measurement needed to check the targets
# and writes all tables into one markdown file.
#
#   bash benchmarks/run_gpu_suite.sh [RESULT.md]
#
# Default result file: benchmarks/results/gpu_suite_<UTC date-time>.md (full logs next to it, *.log).
# Environment:
#   SUITE_BUDGET_S  time budget in seconds (default 420; with start-up and the last item's 20 s grace period
#                   the suite ends within 8 minutes). Every item gets min(its own cap, what is left); items that
#                   no longer fit are listed as skipped; an item stopped by its cap still writes its finished rows.
#   PYTHON          interpreter (default: python)
#   STEPS / WARMUP  timed / untimed steps per row (default 10 / 3)
#   E2E_WORKERS     DataLoader workers for the end-to-end row (default 8)
#   PYTORCH_CUDA_ALLOC_CONF  defaults to expandable_segments:True (less fragmentation; recorded in the file)
#   SUITE_SMOKE=1   check the script itself on a CPU machine: tiny config, small batches, --device cpu, 1 thread
#
# Items, most important first (targets in brackets):
#   1. pretraining, official config, batch 128, text 128: fp32 / bf16-autocast x pos conv direct / FFT
#      [>= 1,800 samples/s, peak <= 30 GiB; official code: 166 fp32, 454 bf16]
#   2. batch 256, bf16-autocast, FFT pos conv, without and with gradient checkpointing [256 fits with ckpt]
#   3. embeddings, batch 256: ECG fp32 / bf16-autocast x direct / FFT, text [>= 10,000 ECGs/s]
#   4. positional convolution alone, batch 128: direct vs FFT, forward and forward+backward
#   5. end-to-end pretraining: Arrow corpus -> DataLoader -> collator with N3S -> step (bf16-autocast, FFT)
#   6. N3S sampling (benchmarks/bench_n3s.py) [< 1 ms per batch of 128]
#   7. torch.compile on: ECG and text embeddings (batch 256, bf16-autocast, FFT)
#   8. torch.compile on: pretraining step (batch 128, bf16-autocast, FFT)
#   9. bf16 weights and eager attention (batch 128), if time is left
set -u -o pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
BUDGET=${SUITE_BUDGET_S:-420}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
E2E_WORKERS=${E2E_WORKERS:-8}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [ "${SUITE_SMOKE:-0}" = 1 ]; then
    DEVICE=cpu PRESET=tiny B=4 BIG_B=8 EMB_B=8 N3S_REPORTS=2000 SYNTH=32 STEPS=2 WARMUP=1 E2E_WORKERS=1
    EXTRA=(--threads 1)
else
    DEVICE=cuda PRESET=official B=128 BIG_B=256 EMB_B=256 N3S_REPORTS=20000 SYNTH=512
    EXTRA=()
fi

RESULT=${1:-benchmarks/results/gpu_suite_$(date -u +%Y%m%d_%H%M).md}
mkdir -p "$(dirname "$RESULT")"
LOG="${RESULT%.md}.log"
CORPUS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dbeta_suite_corpus.XXXXXX")
trap 'rm -rf "$CORPUS_DIR"' EXIT
START=$(date +%s)
: > "$LOG"

if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "CUDA is not available: this suite is meant for a GPU machine" >&2
    exit 1
fi

{
    echo "# D-BETA GPU benchmark suite"
    echo
    echo "- started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host $(hostname), time budget ${BUDGET}s, steps ${STEPS}, warmup ${WARMUP}"
    echo "- PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF}"
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv,noheader 2>/dev/null || echo n/a)"
    echo "- $("$PY" -c 'import torch, transformers, platform; print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), transformers {transformers.__version__}")')"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo n/a)$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' + local changes')"
    echo
} >> "$RESULT"

# item CAP_SECONDS "TITLE" command...: runs the command under min(CAP, budget left); bench_* scripts append their own table
item() {
    local cap=$1 title=$2
    shift 2
    local now elapsed left limit rc
    now=$(date +%s)
    elapsed=$((now - START))
    left=$((BUDGET - elapsed))
    echo "## ${title}" >> "$RESULT"
    echo >> "$RESULT"
    if [ "$left" -lt 30 ]; then
        echo "_skipped: the time budget (${BUDGET}s) is used up_" >> "$RESULT"
        echo >> "$RESULT"
        echo "[suite] skip: ${title}"
        return
    fi
    limit=$(( cap < left ? cap : left ))
    echo "[suite] ${title} (limit ${limit}s, ${elapsed}s elapsed)"
    local item_log t0 took shown
    item_log=$(mktemp "${TMPDIR:-/tmp}/dbeta_suite_item.XXXXXX")
    t0=$(date +%s)
    timeout --signal=INT --kill-after=20 "$limit" "$@" > "$item_log" 2>&1
    rc=$?
    took=$(( $(date +%s) - t0 ))
    { echo "===== ${title} (${took}s, exit ${rc})"; printf '%q ' "$@"; echo; cat "$item_log"; } >> "$LOG"
    shown=$(printf '%q ' "$@" | sed "s| --output [^ ]*||")
    echo "_command (${took}s, exit ${rc}):_ \`${shown% }\`" >> "$RESULT"
    if [ "$rc" -ne 0 ]; then
        {
            echo
            if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ]; then echo "**stopped by its time limit (${limit}s)**"; fi
            echo '```'
            tail -n 15 "$item_log"
            echo '```'
        } >> "$RESULT"
    fi
    rm -f "$item_log"
    echo >> "$RESULT"
}

COMMON=(--preset "$PRESET" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --output "$RESULT" "${EXTRA[@]}")
BP=(benchmarks/bench_pretrain.py "${COMMON[@]}" --text-length 128)
BE=(benchmarks/bench_embed.py "${COMMON[@]}")

item 110 "1. Pretraining step, ${PRESET} config, batch ${B}, text 128 (direct vs FFT positional conv)" \
    "$PY" "${BP[@]}" --batch-size "$B" --dtype fp32 bf16-autocast --conv-pos conv fft --sync-debug \
    --title "Pretraining, batch ${B}: fp32 / bf16-autocast x conv / fft"

item 80 "2. Batch ${BIG_B} with and without gradient checkpointing" \
    "$PY" "${BP[@]}" --batch-size "$BIG_B" --dtype bf16-autocast --conv-pos fft --gradient-checkpointing both \
    --title "Pretraining, batch ${BIG_B}, bf16-autocast, fft: checkpointing off / on"

item 60 "3. Embeddings, batch ${EMB_B} (ECG: direct vs FFT positional conv; text 128 tokens)" \
    "$PY" "${BE[@]}" --batch-size "$EMB_B" --dtype fp32 bf16-autocast --conv-pos conv fft --text-length 128 \
    --title "Embeddings, batch ${EMB_B}"

item 40 "4. Positional convolution alone, batch ${B} (${PRESET} shape)" \
    "$PY" "${BP[@]}" --pos-conv-kernel --batch-size "$B" --dtype fp32 bf16-autocast --conv-pos conv fft \
    --title "Positional convolution kernel, batch ${B}"

item 100 "5. End-to-end pretraining (Arrow -> DataLoader -> collator with N3S -> step)" \
    "$PY" "${BP[@]}" --end-to-end --batch-size "$B" --dtype bf16-autocast --conv-pos fft \
    --num-workers "$E2E_WORKERS" --synthetic-size "$SYNTH" --synthetic-cache "$CORPUS_DIR/corpus" \
    --title "End-to-end pretraining, batch ${B}, bf16-autocast, fft, ${E2E_WORKERS} workers"

echo "## 6. N3S negative sampling (benchmarks/bench_n3s.py, see README_n3s.md)" >> "$RESULT"
echo >> "$RESULT"
N3S_JSON="${RESULT%.md}_n3s.json"
left=$((BUDGET - $(date +%s) + START))
if [ "$left" -ge 30 ]; then
    limit=$(( 45 < left ? 45 : left ))
    echo "[suite] 6. N3S (limit ${limit}s)"
    rm -f "$N3S_JSON"
    N3S_CMD=(benchmarks/bench_n3s.py --num-reports "$N3S_REPORTS" --device "$DEVICE" --quiet --collator --json "$N3S_JSON")
    echo "===== 6. N3S: ${N3S_CMD[*]}" >> "$LOG"
    timeout --signal=INT --kill-after=10 "$limit" "$PY" "${N3S_CMD[@]}" >> "$LOG" 2>&1
    rc=$?
    {
        echo "_command (exit ${rc}):_ \`$PY ${N3S_CMD[*]}\`"
        echo
        echo '```json'
        if [ -f "$N3S_JSON" ]; then cat "$N3S_JSON"; echo; else tail -n 15 "$LOG"; fi
        echo '```'
        echo
    } >> "$RESULT"
else
    echo "_skipped: the time budget (${BUDGET}s) is used up_" >> "$RESULT"
    echo >> "$RESULT"
fi

item 100 "7. torch.compile: embeddings (batch ${EMB_B}, bf16-autocast, FFT; compare with item 3)" \
    "$PY" "${BE[@]}" --batch-size "$EMB_B" --dtype bf16-autocast --conv-pos fft --compile on --text-length 128 \
    --title "Embeddings, batch ${EMB_B}, bf16-autocast, fft, torch.compile"

item 170 "8. torch.compile: pretraining step (batch ${B}, bf16-autocast, FFT; compare with item 1)" \
    "$PY" "${BP[@]}" --batch-size "$B" --dtype bf16-autocast --conv-pos fft --compile on \
    --title "Pretraining, batch ${B}, bf16-autocast, fft, torch.compile"

item 60 "9. bf16 weights; eager attention (batch ${B}, FFT positional conv)" \
    "$PY" "${BP[@]}" --batch-size "$B" --dtype bf16 bf16-autocast --attn eager sdpa --conv-pos fft \
    --title "Pretraining, batch ${B}: bf16 weights vs bf16-autocast, eager vs sdpa"

END=$(date +%s)
echo "- finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $((END - START))s in all; full logs: ${LOG}" >> "$RESULT"
echo "[suite] done in $((END - START))s: ${RESULT}"
