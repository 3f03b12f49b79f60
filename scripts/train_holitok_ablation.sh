#!/usr/bin/env bash
# Train holitok-small through stages I -> II -> III and, for the same total number of steps,
# the vanilla VAE (the paper's key ablation). The two pipelines run side by side, one thread each.
# Rerunning resumes any run that has checkpoints (`speechtok train --resume`), so an interrupted
# pipeline loses at most one checkpoint interval.
#   bash scripts/train_holitok_ablation.sh [RUNS_DIR]      (default runs/)
set -euo pipefail
runs=${1:-runs}
data=data/splits/train.tsv
valid=data/splits/dev.tsv
stage_steps=(1200 300 500)   # stages I, II, III
total=$(( stage_steps[0] + stage_steps[1] + stage_steps[2] ))

train() {  # train OUT STEPS ARGS... : start the run, or resume it when it has checkpoints
  local out=$1 steps=$2; shift 2
  if compgen -G "$out/checkpoints/step_*" > /dev/null; then
    speechtok train --resume "$out" --steps "$steps" --no-progress
  else
    speechtok train --preset holitok-small --data "$data" --valid "$valid" --steps "$steps" --out "$out" --no-progress "$@"
  fi
}

three_stages() {
  train "$runs/holitok-s1" "${stage_steps[0]}" --stage 1 --config configs/holitok-small.yaml
  train "$runs/holitok-s2" "${stage_steps[1]}" --stage 2 --config configs/holitok-small-finetune.yaml --init "$runs/holitok-s1"
  train "$runs/holitok-s3" "${stage_steps[2]}" --stage 3 --config configs/holitok-small-finetune.yaml --init "$runs/holitok-s2"
}

mkdir -p "$runs"
three_stages > "$runs/holitok-stages.log" 2>&1 &
train "$runs/holitok-vanilla" "$total" --stage 0 --config configs/holitok-small.yaml > "$runs/holitok-vanilla.log" 2>&1 &
wait
