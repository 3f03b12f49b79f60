#!/usr/bin/env bash
# Continue sitok-default on the data engine's corpus on a lent GPU, for the whole lease, in ONE device
# call (issue 13). Two arms share the GPU: `full` trains everything, `decoder` only the flow-matching
# decoder over frozen codes (the paper's decoder stage), so one lease says where a gain comes from.
#
#   here (CPU):   bash scripts/gpu_corpus_job.sh prepare [CORPUS_MANIFEST] [TRAIN_MIB] [KBPS] [ARM]
#     packs the corpus as Opus (`speechtok data pack`; default 21 MiB ≈ 2.3 h at 20 kbit/s, the lowest rate
#     that keeps most of the band above 8 kHz: 12 kbit/s, which session 18 used, cuts it), the dev split
#     and the wheels the GPU image lacks (soundfile with cffi and pycparser, soxr; espeakng-loader, 10 MB, apart in
#     .gpu/phoneme: only an arm whose aligner reads phonemes carries it) into .gpu/ (git-ignored). The device carries at
#     most 64 MiB together with the tracked files, counted with ~1 KiB per file of archive overhead, so run
#     the calls from the lease tree (`lease-begin` below: only the code and vocos-24k tracked) and carry
#     the bundles a call needs (docs/training.md, "On a lent GPU": 33.6 MB tracked + 21 MiB of pack passed,
#     25 MiB did not).
#     A .gpu/train packed before session 20 has the old pack layout (no sources) and is refused: delete it.
#   more data than one call carries (session 19): pack a bigger corpus copy anywhere, then
#                 bash scripts/gpu_corpus_job.sh split PACK_DIR MIB [MIB ...]
#     cuts it into .gpu/part-1.zip, part-2.zip, ... (MIB each, the last one takes the rest; one stored zip per
#     part: the device counts ~1 KiB per file it carries, a zip entry costs ~0.15 KiB, a tar entry ~0.75).
#     Carry each part in its own short call,
#     run(command="bash scripts/gpu_corpus_job.sh receive", carry=[".gpu/part-1.zip"]), back to back while
#     the machine is warm (it is handed back after ~30 s idle; what was received is then gone and `train`
#     uses the parts it finds); `train` trains on every part received. From the lease tree, carry the bundle
#     with the train call: carry=["speechtok/checkpoints/sitok-default", ".gpu/dev", ".gpu/wheels"]
#     (docs/training.md, "On a lent GPU (session 19)").
#   device tool:  run(command="bash scripts/gpu_corpus_job.sh train 450", carry=[".gpu"], timeout_s=600)
#     each arm trains for 450 s of wall time, data loading included (`train.time_budget_s` refits the cosine
#     schedule to it at every log window and keeps back time for the final validation and checkpoint); the
#     export after it and the call's start take ~30 s more, so keep SECONDS ≤ timeout_s − 50. Then each
#     arm's fp16 export travels back as its difference from sitok-default
#     (scripts/checkpoint_delta.py), in parts the return path accepts (at most 8 files of 16 MiB, 64 MiB in all:
#     two arms of sitok-small fit, 2 × (2 parts + meta.tar) + gpu.txt).
#   back here:    bash scripts/gpu_corpus_job.sh unpack FILES_AT OUT_DIR
#     rebuilds OUT_DIR/sitok-gpu-ARM (OUT_DIR/ardit-gpu-ARM) for every arm (hash-checked; run logs and metrics in
#     OUT_DIR/delta-ARM); judge them against the bundle they started from and bundle only on a paired gain.
#   the lease tree:  bash scripts/gpu_corpus_job.sh lease-begin   ...device calls...   bash scripts/gpu_corpus_job.sh lease-end
#     lease-begin switches to a throwaway branch `gpu-lease` on which checkpoints/ and the bundled sitok-default,
#     holitok-default and ardit-default are untracked and ignored (the code and vocos-24k stay: ~3 MiB travel with
#     every call), so a checkpoint travels only when a call carries it; lease-end switches back and deletes it,
#     and refuses (leaving everything as it is) when the lease branch holds work: an edited tracked file, a
#     commit of its own, or a bundle that no longer matches the branch it came from.
#
# Arms named `ardit*` (issue 14) continue the AR+DiT ardit-default on holitok-default's latents, which the
# device computes from the received audio: carry both, e.g.
#   GPU_JOB_ARMS="ardit=configs/ardit-gpu-continue.yaml" bash scripts/gpu_corpus_job.sh train 540
#   carry=["speechtok/checkpoints/ardit-default", "speechtok/checkpoints/holitok-default", ".gpu/dev", ".gpu/wheels",
#          ".gpu/phoneme" (configs/ardit-gpu-continue.yaml's aligner reads phonemes), ...]
# Their recipe names its tokenizer (`model: tokenizer:`); a SiTok recipe does not, and an arm whose name and
# recipe disagree is refused. They export with the carried bundle's end-of-speech threshold (GPU_JOB_EOS
# overrides it) and come back whole (6 MB). A `decoder*` arm freezes the encoder: never give it a recipe that
# grows the encoder (configs/sitok-gpu-grow.yaml), whose new layers would then never train.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu_corpus_job.sh prepare [MANIFEST] [TRAIN_MIB] [KBPS] [ARM] | split PACK_DIR MIB... | lease-begin | receive | train SECONDS | lease-end | unpack FILES_AT OUT_DIR}
shift
# GPU_JOB_ARMS: which arms (default both), e.g. "decoder" alone for a short second lease. An arm whose name
# starts with "decoder" trains the decoder stage, any other everything; an arm reads its own pack
# .gpu/train-ARM when `prepare ... ARM` made one (e.g. "decoder12 decoder20": one band-limited, one full-band
# pack), else the shared .gpu/train. Every pack under .gpu/ travels: leave out the ones a lease does not use.
# An arm written ARM=CONFIG trains with its own recipe (e.g. "full=configs/sitok-gpu-continue.yaml
# big=configs/sitok-gpu-continue-big.yaml": two recipes side by side), any other with GPU_JOB_CONFIG (an `ardit*`
# arm with configs/ardit-gpu-continue.yaml).
read -r -a arm_specs <<< "${GPU_JOB_ARMS:-full decoder}"
arms=() arm_configs=()
for spec in "${arm_specs[@]}"; do
  name=${spec%%=*}
  [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "GPU_JOB_ARMS: '$spec' needs an arm name of letters, digits, _ or -" >&2; exit 2; }
  [[ " ${arms[*]} " != *" $name "* ]] || { echo "GPU_JOB_ARMS: arm '$name' twice" >&2; exit 2; }
  arms+=("$name")
  if [[ "$spec" == *=* ]]; then arm_configs+=("${spec#*=}")
  elif [[ "$name" == ardit* ]]; then arm_configs+=("configs/ardit-gpu-continue.yaml")
  else arm_configs+=("${GPU_JOB_CONFIG:-configs/sitok-gpu-corpus.yaml}"); fi
done
# Parts received on the device live outside the working tree, so a later call keeps them (same machine).
parts=/tmp/gpu-parts
# what the lease tree leaves untracked (and ignored): every checkpoint but the vocoder SiTok exports decode with
lease_heavy=(checkpoints speechtok/checkpoints/sitok-default speechtok/checkpoints/holitok-default speechtok/checkpoints/ardit-default)

# The model an arm trains: its family (sitok or ardit), the bundle it starts from, and the train/export arguments.
arm_model() {
  if [[ "$1" == ardit* ]]; then
    family=ardit base=ardit-default
    train_args=(--preset ardit-small)
    export_args=()  # and the carried bundle's end-of-speech threshold, read at export (bundled_eos_threshold)
  else
    family=sitok base=sitok-default
    train_args=(--preset sitok-small --stage full)
    [[ "$1" == decoder* ]] && train_args=(--preset sitok-small --stage decoder)
    export_args=(--vocoder vocos-24k --sample-steps 4 --cfg-scale 1 --sample-temperature 0)
  fi
}

bundled_eos_threshold() {  # GPU_JOB_EOS, else the carried ardit-default's own
  echo "${GPU_JOB_EOS:-$(python3 -c 'import json; print(json.load(open("speechtok/checkpoints/ardit-default/config.json"))["config"]["eos_threshold"])')}"
}

ignore_gpu_folder() {  # .gpu/ never shows as untracked, so it travels only when carried
  mkdir -p .gpu
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
}

# Unpack every carried part not yet received (a re-split part with the same name but other contents is
# unpacked again: the zip's hash is kept beside it). GPU_JOB_PARTS=N makes fewer than N received parts an error.
receive() {
  mkdir -p "$parts"
  for archive in .gpu/part-*.zip; do
    [ -f "$archive" ] || continue
    name=$(basename "$archive" .zip)
    hash=$(sha256sum "$archive" | cut -d' ' -f1)
    if [ "$(cat "$parts/$name/.zip-sha256" 2>/dev/null)" != "$hash" ]; then
      rm -rf "$parts/$name" "$parts/$name.tmp"
      python3 -m zipfile -e "$archive" "$parts/$name.tmp"
      echo "$hash" > "$parts/$name.tmp/.zip-sha256"
      mv "$parts/$name.tmp" "$parts/$name"
    fi
  done
  received=0
  for manifest in "$parts"/part-*/manifest.tsv; do
    [ -f "$manifest" ] || continue
    received=$((received + 1))
    echo "received $(dirname "$manifest"): $(($(wc -l < "$manifest") - 1)) files"
  done
  if [ "$received" -lt "${GPU_JOB_PARTS:-0}" ]; then
    echo "only $received of GPU_JOB_PARTS=$GPU_JOB_PARTS parts received (the machine was handed back between calls?)" >&2
    exit 2
  fi
}

case "$mode" in
prepare)
  ignore_gpu_folder
  mkdir -p .gpu/wheels
  speechtok data pack "${1:-/work/corpus/manifest.tsv}" -o ".gpu/train${4:+-$4}" --max-mb "${2:-21}" --kbps "${3:-20}"
  [ -f .gpu/dev/manifest.tsv ] || speechtok data pack data/splits/dev.tsv -o .gpu/dev --max-mb 2 --kbps 16
  # the CUDA image has torch, numpy, safetensors, yaml and tqdm, but not soundfile (nor its cffi) or soxr,
  # nor espeak-ng: espeakng-loader (10 MB) goes to its own folder, carried only by an arm that reads phonemes
  for wheel in soundfile==0.13.1 cffi==1.17.1 pycparser==2.22 soxr==0.5.0.post1 espeakng-loader==0.2.4; do
    folder=.gpu/wheels; [ "${wheel%%==*}" = espeakng-loader ] && folder=.gpu/phoneme
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_27_x86_64 -d "$folder" "$wheel"
  done
  du -sh .gpu
  git ls-files -z | du -ch --files0-from=- | tail -n 1 | sed 's/total/tracked files (with .gpu at most 64 MiB)/'
  ;;
split)
  pack_dir=${1:?split needs a pack folder (speechtok data pack)}; shift
  [ $# -ge 1 ] || { echo "split needs the MiB of each part but the last" >&2; exit 2; }
  [ -f "$pack_dir/manifest.tsv" ] || { echo "$pack_dir: no manifest.tsv (not a pack)" >&2; exit 2; }
  ignore_gpu_folder
  rm -f .gpu/part-*.zip
  python3 - "$pack_dir" .gpu "$@" <<'PY'
import sys, zipfile
from pathlib import Path
pack, dest, caps = Path(sys.argv[1]), Path(sys.argv[2]), [float(m) * 2**20 for m in sys.argv[3:]]
header, *rows = (pack / "manifest.tsv").read_text().splitlines()
groups, used = [[]], len(header) + 200  # the part's manifest and its zip entry
for row in rows:
    path = row.split("\t", 1)[0]
    size = (pack / path).stat().st_size + 80 + 2 * len(path) + len(row) + 1  # the file, its zip entry, its row
    if groups[-1] and len(groups) <= len(caps) and used + size > caps[len(groups) - 1]:
        groups.append([]); used = len(header) + 200
    groups[-1].append(row); used += size
for number, group in enumerate(groups, 1):
    listing = (header + "\n" + "".join(r + "\n" for r in group)).encode()
    with zipfile.ZipFile(dest / f"part-{number}.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.tsv", listing)
        for r in group:
            path = r.split("\t", 1)[0]
            archive.write(pack / path, arcname=path)
    seconds = sum(float(r.split("\t")[1]) for r in group)
    mib = (dest / f"part-{number}.zip").stat().st_size / 2**20
    over = f" (over its cap of {sys.argv[2 + number]} MiB)" if number <= len(caps) and mib * 2**20 > caps[number - 1] else ""
    print(f"{dest}/part-{number}.zip: {len(group)} files, {seconds / 3600:.2f} h, {mib:.1f} MiB{over}")
PY
  ;;
receive)
  receive
  ;;
lease-begin)
  git diff --quiet && git diff --cached --quiet || { echo "lease-begin: commit or stash the tracked changes first" >&2; exit 2; }
  branch=$(git symbolic-ref --short HEAD) || { echo "lease-begin: HEAD is not on a branch" >&2; exit 2; }
  [ "$branch" != gpu-lease ] || { echo "lease-begin: already on the lease branch" >&2; exit 2; }
  ignore_gpu_folder
  echo "$branch" > .gpu/lease-from
  git switch -q -c gpu-lease
  git rm -r -q --cached --ignore-unmatch "${lease_heavy[@]}"
  for path in "${lease_heavy[@]}"; do grep -qx "/$path/" .git/info/exclude || echo "/$path/" >> .git/info/exclude; done
  git commit -q --allow-empty -m "gpu lease tree (throwaway: lease-end deletes it)"
  git ls-files -z | du -ch --files0-from=- | tail -n 1 | sed 's/total/tracked files on the lease branch/'
  ;;
lease-end)
  [ "$(git symbolic-ref --short HEAD 2>/dev/null)" = gpu-lease ] || { echo "lease-end: not on the lease branch" >&2; exit 2; }
  from=$(cat .gpu/lease-from 2>/dev/null) || { echo "lease-end: .gpu/lease-from is missing (which branch to return to?)" >&2; exit 2; }
  [ -z "$(git status --porcelain -uno)" ] || { echo "lease-end: tracked files changed on the lease branch; commit them on $from first" >&2; exit 2; }
  [ "$(git rev-list --count "$from"..gpu-lease)" = 1 ] || { echo "lease-end: the lease branch has commits of its own; move them to $from first" >&2; exit 2; }
  # the bundles are ignored here, so switching would overwrite a changed one without a word: compare first
  index=$(mktemp); GIT_INDEX_FILE=$index git read-tree "$from"
  GIT_INDEX_FILE=$index git diff --quiet -- "${lease_heavy[@]}" || { rm -f "$index"; echo "lease-end: a checkpoint changed during the lease (git diff $from -- ${lease_heavy[*]}); save it elsewhere first" >&2; exit 2; }
  rm -f "$index"
  git switch -q "$from"  # takes the checkpoints back into the index (the same files)
  for path in "${lease_heavy[@]}"; do sed -i "\\#^/$path/\$#d" .git/info/exclude; done
  git branch -q -D gpu-lease
  rm -f .gpu/lease-from
  git status --short | head -n 5
  ;;
unpack)
  back=${1:?unpack needs the folder the files came back in}; dest=${2:?unpack needs an output folder}
  # every arm that came back (whatever GPU_JOB_ARMS says here); its family is its export's model kind
  compgen -G "$back/*/meta.tar" > /dev/null || { echo "$back: no arm came back (no */meta.tar)" >&2; exit 2; }
  for meta in "$back"/*/meta.tar; do
    arm=$(basename "$(dirname "$meta")")
    delta=$dest/delta-$arm
    mkdir -p "$delta"
    tar -xf "$meta" -C "$delta"
    cat "$back/$arm"/weights.part-* > "$delta/changed.safetensors"
    family=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["kind"])' "$delta/config.json")
    python scripts/checkpoint_delta.py apply "$delta" "$family-default" "$dest/$family-gpu-$arm"
  done
  ;;
train)
  seconds=${1:?train needs a wall-clock budget in seconds}
  for folder in .gpu/wheels .gpu/phoneme; do
    if [ -d "$folder" ]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$folder"/*.whl
      export PYTHONPATH="/tmp/site:$PWD"
    fi
  done
  export PYTHONUNBUFFERED=1
  out=${OUT:-runs/gpu-out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
  # batch shapes vary from step to step: let the CUDA allocator grow its segments rather than cache blocks per shape
  export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
  # GPU_JOB_CONFIG / ARM=CONFIG: another recipe (e.g. a tiny one to rehearse the job on a CPU); `train:` must be its last section
  for index in "${!arms[@]}"; do  # every arm checked before any starts
    [ -f "${arm_configs[$index]}" ] || { echo "arm ${arms[$index]}: no recipe ${arm_configs[$index]}" >&2; exit 2; }
    arm_model "${arms[$index]}"
    needs=("$base"); [ "$family" = ardit ] && needs+=(holitok-default)
    for bundle in "${needs[@]}"; do
      [ -f "speechtok/checkpoints/$bundle/config.json" ] || { echo "arm ${arms[$index]}: $bundle was not carried" >&2; exit 2; }
    done
    if grep -Eq '^\s+tokenizer:' "${arm_configs[$index]}"; then reads=ardit; else reads=sitok; fi
    [ "$reads" = "$family" ] || { echo "arm ${arms[$index]}: a $family arm (by its name) with a $reads recipe (${arm_configs[$index]})" >&2; exit 2; }
    if grep -Eq '^\s+aligner_vocab:\s*phoneme' "${arm_configs[$index]}" \
        && ! python3 -c 'from speechtok import espeak; raise SystemExit(not espeak.available())'; then
      echo "arm ${arms[$index]}: its aligner reads phonemes: carry .gpu/phoneme (espeakng-loader)" >&2; exit 2
    fi
    { cat "${arm_configs[$index]}"; echo "  time_budget_s: $seconds"; } > "/tmp/gpu-${arms[$index]}.yaml"
  done
  receive
  if compgen -G "$parts/part-*/manifest.tsv" > /dev/null; then  # every received part, as one manifest
    mkdir -p /tmp/gpu-train
    { echo -e "path\tseconds\tspeaker\ttranscript"
      for manifest in "$parts"/part-*/manifest.tsv; do
        tail -n +2 "$manifest" | sed "s#^#$(dirname "$manifest")/#"
      done; } > /tmp/gpu-train/manifest.tsv
  fi
  pids=()
  for arm in "${arms[@]}"; do
    arm_model "$arm"
    data=.gpu/train  # an arm's own pack first, then the received parts, then the shared pack
    [ -f /tmp/gpu-train/manifest.tsv ] && data=/tmp/gpu-train
    [ -d ".gpu/train-$arm" ] && data=.gpu/train-$arm
    rm -rf "/tmp/run-$arm" "/tmp/export/$family-gpu-$arm" "/tmp/delta-$arm"  # a fresh run, never an old one's checkpoints
    # `timeout` is only the safety net: the budget ends each run itself, with a final checkpoint
    timeout --signal=INT $((seconds + 90)) python3 -m speechtok.cli train "${train_args[@]}" --init "$base" \
      --config "/tmp/gpu-$arm.yaml" --data "$data/manifest.tsv" --valid .gpu/dev/manifest.tsv \
      --out "/tmp/run-$arm" --no-progress > "/tmp/$arm.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  for arm in "${arms[@]}"; do
    echo "== $arm"; grep -v '^\s*$' "/tmp/$arm.log" | tail -n 4
    last=$(ls -d /tmp/run-"$arm"/checkpoints/step_* 2>/dev/null | sort | tail -n 1) || true
    [ -n "$last" ] || continue
    arm_model "$arm"
    [ "$family" = ardit ] && export_args=(--eos-threshold "$(bundled_eos_threshold)")
    python3 scripts/bundle_checkpoint.py "$last" "$family-gpu-$arm" "${export_args[@]}" --out-dir /tmp/export
    python3 scripts/checkpoint_delta.py diff "/tmp/export/$family-gpu-$arm" "$base" "/tmp/delta-$arm"
    cp "/tmp/run-$arm/metrics.jsonl" "/tmp/$arm.log" "/tmp/delta-$arm/"
    mkdir -p "$out/$arm"
    tar -cf "$out/$arm/meta.tar" -C "/tmp/delta-$arm" config.json keys.json metrics.jsonl "$arm.log"
    size=$(stat -c %s "/tmp/delta-$arm/changed.safetensors")
    split -d -n $(( (size + 16777215) / 16777216 )) "/tmp/delta-$arm/changed.safetensors" "$out/$arm/weights.part-"
  done
  ls -la "$out" "$out"/*/
  ;;
*)
  echo "unknown mode $mode (prepare, split, lease-begin, receive, train, lease-end or unpack)" >&2; exit 2 ;;
esac
