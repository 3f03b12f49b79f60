#!/usr/bin/env bash
# The GPU recipes of session 4, all at once on one GPU (the models are small: together they kept an
# H100 about half busy): sitok-small from scratch, a fine-tune of the bundled vocos-24k, and the
# AR+DiT comparison (unified / TTS-only / ASR-only on HoliTok latents, unified on sitok-default codes).
# Rerunning resumes every run from its latest checkpoint.
#   bash scripts/train_gpu.sh [DATA_DIR] [RUNS_DIR]
# DATA_DIR holds train+synthetic.tsv, train.tsv and dev.tsv (default data/splits; the session-4 runs
# read an Opus copy of it without the FSDD digits, see docs/training.md). Logs: RUNS_DIR/NAME.log.
set -euo pipefail
data=${1:-data/splits}
runs=${2:-runs/gpu}
mkdir -p "$runs"

train() {  # train NAME ARGS...: a new run, or resume an existing one
  local name=$1; shift
  if compgen -G "$runs/$name/checkpoints/step_*" > /dev/null; then
    speechtok train --resume "$runs/$name" --no-progress
  else
    speechtok train "$@" --valid "$data/dev.tsv" --out "$runs/$name" --no-progress
  fi > "$runs/$name.log" 2>&1
}

ardit_config() {  # ardit_config NAME TOKENIZER TTS_RATIO
  { echo "model:"; echo "  tokenizer: $2"; echo "objective:"; echo "  tts_ratio: $3"; cat configs/ardit-small-gpu.yaml; } \
    > "$runs/$1.yaml"
}

pids=()
train sitok --preset sitok-small --data "$data/train+synthetic.tsv" --config configs/sitok-small-gpu.yaml & pids+=($!)
train vocos --preset vocos-small --init vocos-24k --data "$data/train.tsv" --config configs/vocos-small-gpu-finetune.yaml & pids+=($!)
for spec in "ardit-unified checkpoints/holitok-small-stage3 0.8333" "ardit-tts checkpoints/holitok-small-stage3 1.0" \
            "ardit-asr checkpoints/holitok-small-stage3 0.0" "ardit-unified-sitok sitok-default 0.8333"; do
  set -- $spec
  ardit_config "$1" "$2" "$3"
  preset=ardit-small; [ "$2" = sitok-default ] && preset=ardit-small-sitok
  train "$1" --preset "$preset" --data "$data/train+synthetic.tsv" --config "$runs/$1.yaml" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "done: bundle with scripts/bundle_checkpoint.py (sitok → sitok-default, vocos → vocos-24k); AR+DiT table: python scripts/ardit_table.py --runs $runs --marker ardit-table"
