#!/usr/bin/env bash
# Train holitok-small-mel (mel front-end + mel head, docs/holitok.md) through stages I -> II -> III
# and, for the same total of steps on the same data, the vanilla VAE; then bundle stage III as
# holitok-default. The two pipelines run side by side, one thread each. Rerunning resumes any run
# that has checkpoints, so an interrupted pipeline loses at most one checkpoint interval.
#   bash scripts/train_holitok_default.sh STAGE1_DATA CORPUS_DATA [RUNS_DIR]
# STAGE1_DATA: real speech (e.g. the corpus's `real` source, or data/splits/train.tsv);
# CORPUS_DATA: a transcribed corpus manifest (speechtok data synth) for stages II and III.
set -euo pipefail
stage1_data=$1
corpus=$2
runs=${3:-runs}
valid=data/splits/dev.tsv
steps=(3000 800 1500)  # stages I, II, III (configs/holitok-mel*.yaml); the vanilla VAE matches their sum

train() {  # train OUT ARGS... : start the run, or resume it when it has checkpoints
  local out=$1; shift
  if compgen -G "$out/checkpoints/step_*" > /dev/null; then
    speechtok train --resume "$out" --no-progress
  else
    speechtok train --preset holitok-small-mel --valid "$valid" --out "$out" --no-progress "$@"
  fi
}

three_stages() {
  train "$runs/holitok-mel-s1" --stage 1 --config configs/holitok-mel.yaml --data "$stage1_data"
  train "$runs/holitok-mel-s2" --stage 2 --config configs/holitok-mel-stage2.yaml --data "$corpus" --init "$runs/holitok-mel-s1"
  train "$runs/holitok-mel-s3" --stage 3 --config configs/holitok-mel-stage3.yaml --data "$corpus" --init "$runs/holitok-mel-s2"
}

vanilla() {  # stage 0 (everything from scratch, β 0.1): stage I's data and steps, then the corpus for II + III's
  train "$runs/holitok-mel-vanilla-a" --stage 0 --config configs/holitok-mel.yaml --data "$stage1_data"
  train "$runs/holitok-mel-vanilla" --stage 0 --config configs/holitok-mel-stage2.yaml --data "$corpus" \
    --steps $(( steps[1] + steps[2] )) --init "$runs/holitok-mel-vanilla-a"
}

mkdir -p "$runs"
three_stages > "$runs/holitok-mel-stages.log" 2>&1 &
vanilla > "$runs/holitok-mel-vanilla.log" 2>&1 &
wait
python scripts/bundle_checkpoint.py \
  "$(python -c "from speechtok.train.state import find_checkpoint; print(find_checkpoint('$runs/holitok-mel-s3'))")" holitok-default
