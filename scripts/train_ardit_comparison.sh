#!/usr/bin/env bash
# Train the AR+DiT comparison (issue 6): unified TTS+ASR vs single-task models on HoliTok latents,
# and the unified model on SiTok codes. Two runs at a time, one thread each; rerunning resumes.
#   bash scripts/train_ardit_comparison.sh [RUNS_DIR] [HOLITOK_CHECKPOINT] [DATA]
# HOLITOK_CHECKPOINT defaults to the latest stage-III checkpoint of scripts/train_holitok_ablation.sh
# in RUNS_DIR, else to its committed fp16 export checkpoints/holitok-small-stage3; pass holitok-default
# for the bundled one. DATA (a transcribed manifest) defaults to data/splits/train.tsv.
set -euo pipefail
runs=${1:-runs}
holitok=${2:-}
data=${3:-data/splits/train.tsv}
if [ -z "$holitok" ]; then
  if [ -d "$runs/holitok-s3" ]; then
    holitok=$(python -c "from speechtok.train.state import find_checkpoint; print(find_checkpoint('$runs/holitok-s3'))")
  else
    holitok=checkpoints/holitok-small-stage3
  fi
fi
[ -e "$holitok" ] && holitok=$(realpath "$holitok")  # else a bundled name
mkdir -p "$runs/ardit-configs"

run() {  # run NAME PRESET TOKENIZER TTS_RATIO
  local name=$1 preset=$2 tokenizer=$3 ratio=$4 config="$runs/ardit-configs/$1.yaml"
  { echo "model:"; echo "  tokenizer: $tokenizer"; echo "objective:"; echo "  tts_ratio: $ratio"; cat configs/ardit-small.yaml; } > "$config"
  if compgen -G "$runs/$name/checkpoints/step_*" > /dev/null; then
    speechtok train --resume "$runs/$name" --no-progress
  else
    speechtok train --preset "$preset" --data "$data" --valid data/splits/dev.tsv \
      --config "$config" --out "$runs/$name" --no-progress
  fi
}

{ run ardit-unified ardit-small "$holitok" 0.8333; run ardit-asr ardit-small "$holitok" 0.0; } > "$runs/ardit-a.log" 2>&1 &
first=$!
{ run ardit-tts ardit-small "$holitok" 1.0; run ardit-unified-sitok ardit-small-sitok sitok-default 0.8333; } > "$runs/ardit-b.log" 2>&1 &
second=$!
wait "$first" && wait "$second"
