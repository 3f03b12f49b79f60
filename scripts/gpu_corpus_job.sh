#!/usr/bin/env bash
# Continue sitok-default on the data engine's corpus on a lent GPU, for the whole lease, in ONE device
# call (issue 13). Two arms share the GPU: `full` trains everything, `decoder` only the flow-matching
# decoder over frozen codes (the paper's decoder stage), so one lease says where a gain comes from.
#
#   here (CPU):   bash scripts/gpu_corpus_job.sh prepare [CORPUS_MANIFEST] [TRAIN_MIB] [KBPS] [ARM]
#     packs the corpus as Opus (`speechtok data pack`; default 21 MiB ≈ 2.3 h at 20 kbit/s, the lowest rate
#     that keeps most of the band above 8 kHz: 12 kbit/s, which session 18 used, cuts it), the dev split
#     and the wheels the GPU image lacks (soundfile with cffi and pycparser, soxr) into .gpu/ (git-ignored). The device carries at
#     most 64 MiB together with the tracked files, counted with ~1 KiB per file of archive overhead, so run
#     the call from a throwaway branch that keeps only the code and sitok-default (docs/training.md, "On a
#     lent GPU": 33.6 MB tracked + 21 MiB of pack passed, 25 MiB did not), and switch back after it.
#   device tool:  run(command="bash scripts/gpu_corpus_job.sh train 450", carry=[".gpu"], timeout_s=600)
#     each arm trains for 450 s of wall time (`train.time_budget_s` fits the cosine schedule to it after the
#     first epoch), then its fp16 export travels back as its difference from sitok-default
#     (scripts/checkpoint_delta.py), in parts the return path accepts (at most 8 files of 16 MiB).
#   back here:    bash scripts/gpu_corpus_job.sh unpack FILES_AT OUT_DIR
#     rebuilds OUT_DIR/sitok-gpu-full and OUT_DIR/sitok-gpu-decoder (hash-checked; run logs and metrics in
#     OUT_DIR/delta-ARM);
#     judge them against sitok-default on the dev split and bundle only on a paired gain.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu_corpus_job.sh prepare [MANIFEST] [TRAIN_MIB] [KBPS] [ARM] | train SECONDS | unpack FILES_AT OUT_DIR}
shift
# GPU_JOB_ARMS: which arms (default both), e.g. "decoder" alone for a short second lease. An arm whose name
# starts with "decoder" trains the decoder stage, any other everything; an arm reads its own pack
# .gpu/train-ARM when `prepare ... ARM` made one (e.g. "decoder12 decoder20": one band-limited, one full-band
# pack), else the shared .gpu/train. Every pack under .gpu/ travels: leave out the ones a lease does not use.
read -r -a arms <<< "${GPU_JOB_ARMS:-full decoder}"

case "$mode" in
prepare)
  mkdir -p .gpu/wheels
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  speechtok data pack "${1:-/work/corpus/manifest.tsv}" -o ".gpu/train${4:+-$4}" --max-mb "${2:-21}" --kbps "${3:-20}"
  [ -f .gpu/dev/manifest.tsv ] || speechtok data pack data/splits/dev.tsv -o .gpu/dev --max-mb 2 --kbps 16
  # the CUDA image has torch, numpy, safetensors, yaml and tqdm, but not soundfile (nor its cffi) or soxr
  for wheel in soundfile==0.13.1 cffi==1.17.1 pycparser==2.22 soxr==0.5.0.post1; do
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_27_x86_64 -d .gpu/wheels "$wheel"
  done
  du -sh .gpu
  git ls-files -z | du -ch --files0-from=- | tail -n 1 | sed 's/total/tracked files (with .gpu at most 64 MiB)/'
  ;;
unpack)
  back=${1:?unpack needs the folder the files came back in}; dest=${2:?unpack needs an output folder}
  for arm in "${arms[@]}"; do
    [ -f "$back/$arm/meta.tar" ] || { echo "$back/$arm: nothing came back for this arm" >&2; continue; }
    delta=$dest/delta-$arm
    mkdir -p "$delta"
    tar -xf "$back/$arm/meta.tar" -C "$delta"
    cat "$back/$arm"/weights.part-* > "$delta/changed.safetensors"
    python scripts/checkpoint_delta.py apply "$delta" sitok-default "$dest/sitok-gpu-$arm"
  done
  ;;
train)
  seconds=${1:?train needs a wall-clock budget in seconds}
  if [ -d .gpu/wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
  fi
  export PYTHONUNBUFFERED=1
  out=${OUT:-runs/gpu-out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
  config=/tmp/sitok-gpu-corpus.yaml
  # GPU_JOB_CONFIG: another recipe (e.g. a tiny one to rehearse the job on a CPU); `train:` must be its last section
  { cat "${GPU_JOB_CONFIG:-configs/sitok-gpu-corpus.yaml}"; echo "  time_budget_s: $seconds"; } > "$config"
  pids=()
  for arm in "${arms[@]}"; do
    stage=full; [[ "$arm" == decoder* ]] && stage=decoder
    data=.gpu/train; [ -d ".gpu/train-$arm" ] && data=.gpu/train-$arm
    # `timeout` is only the safety net: the budget ends each run itself, with a final checkpoint
    timeout --signal=INT $((seconds + 90)) python3 -m speechtok.cli train --preset sitok-small --init sitok-default \
      --config "$config" --stage "$stage" --data "$data/manifest.tsv" --valid .gpu/dev/manifest.tsv \
      --out "/tmp/run-$arm" --no-progress > "/tmp/$arm.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  for arm in "${arms[@]}"; do
    echo "== $arm"; grep -v '^\s*$' "/tmp/$arm.log" | tail -n 4
    last=$(ls -d /tmp/run-"$arm"/checkpoints/step_* 2>/dev/null | sort | tail -n 1) || true
    [ -n "$last" ] || continue
    python3 scripts/bundle_checkpoint.py "$last" "sitok-gpu-$arm" --vocoder vocos-24k --sample-steps 4 --cfg-scale 1 \
      --sample-temperature 0 --out-dir /tmp/export
    python3 scripts/checkpoint_delta.py diff "/tmp/export/sitok-gpu-$arm" sitok-default "/tmp/delta-$arm"
    cp "/tmp/run-$arm/metrics.jsonl" "/tmp/$arm.log" "/tmp/delta-$arm/"
    mkdir -p "$out/$arm"
    tar -cf "$out/$arm/meta.tar" -C "/tmp/delta-$arm" config.json keys.json metrics.jsonl "$arm.log"
    size=$(stat -c %s "/tmp/delta-$arm/changed.safetensors")
    split -d -n $(( (size + 15999999) / 16000000 )) "/tmp/delta-$arm/changed.safetensors" "$out/$arm/weights.part-"
  done
  ls -la "$out" "$out"/*/
  ;;
*)
  echo "unknown mode $mode (prepare, train or unpack)" >&2; exit 2 ;;
esac
