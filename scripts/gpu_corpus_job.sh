#!/usr/bin/env bash
# Train SiTok on the data engine's corpus on a lent GPU, for the whole lease, in ONE device call
# (issue 13). Prepared before any GPU is drawn; run it in two halves:
#
#   here (CPU):   bash scripts/gpu_corpus_job.sh prepare [CORPUS_MANIFEST]   # default /work/corpus/manifest.tsv
#     packs the corpus as Opus (≤ 50 MiB, `speechtok data pack`), the dev split (≤ 4 MiB), and the wheels
#     the GPU image lacks (soundfile, soxr) into .gpu/ (git-ignored) — about 60 MiB to carry.
#   device tool:  run(command="bash scripts/gpu_corpus_job.sh train 540", carry=[".gpu"], timeout_s=600)
#     trains for 540 s of wall time (the rest of a 10-minute call is start-up and export), then writes the
#     fp16 export and metrics into $OUT. Extra arguments go to `speechtok train` (e.g. --preset, --init,
#     --config). Default: sitok-small fine-tuned from the bundled sitok-default with configs/sitok-small-gpu.yaml.
#   back here:    rejoin the weights (cat model.safetensors.part-* > model.safetensors), compare on the dev split (`speechtok eval --systems sitok-default,<export> ...`) and bundle
#     with scripts/bundle_checkpoint.py only if it is better.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu_corpus_job.sh prepare [MANIFEST] | train SECONDS [TRAIN ARGS...]}
shift

if [ "$mode" = prepare ]; then
  corpus=${1:-/work/corpus/manifest.tsv}
  mkdir -p .gpu .gpu/wheels
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  speechtok data pack "$corpus" -o .gpu/train --max-mb 50 --kbps 12
  speechtok data pack data/splits/dev.tsv -o .gpu/dev --max-mb 4 --kbps 16
  for wheel in soundfile==0.13.1 soxr==0.5.0.post1; do  # the CUDA image has torch, numpy, safetensors, yaml, tqdm
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_27_x86_64 -d .gpu/wheels "$wheel"
  done
  du -sh .gpu
  exit 0
fi

[ "$mode" = train ] || { echo "unknown mode $mode (prepare or train)" >&2; exit 2; }
seconds=${1:?train needs a wall-clock budget in seconds}
shift
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
out=${OUT:-runs/gpu-out}
run=/tmp/run-sitok-corpus
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--preset sitok-small --init sitok-default --config configs/sitok-small-gpu.yaml)
# The trainer checkpoints every `checkpoint_every` steps; timeout stops it, the last checkpoint is exported.
timeout --signal=INT "$seconds" python3 -m speechtok.cli train "${args[@]}" --data .gpu/train/manifest.tsv \
  --valid .gpu/dev/manifest.tsv --out "$run" --no-progress 2>&1 | tail -n 40 || true
last=$(ls -d "$run"/checkpoints/step_* | sort | tail -n 1)
python3 scripts/bundle_checkpoint.py "$last" sitok-corpus-gpu --vocoder vocos-24k --out-dir "$out"
cp "$run/metrics.jsonl" "$run/spec.json" "$out/"
# Files come back at most 16 MiB each: rejoin here with `cat model.safetensors.part-* > model.safetensors`.
(cd "$out/sitok-corpus-gpu" && split -b 15m model.safetensors model.safetensors.part- && rm model.safetensors)
ls -la "$out" "$out/sitok-corpus-gpu"
