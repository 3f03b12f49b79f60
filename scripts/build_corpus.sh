#!/usr/bin/env bash
# Build (or continue) the training corpus of docs/data_engine.md into ${1:-corpus}.
# Rerunning the same command resumes: finished utterances are skipped (see OUT/journal.jsonl).
# WORKERS=N for more processes (default 1); extra arguments go to `speechtok data synth`.
set -euo pipefail
out="${1:-corpus}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
exec nice -n 10 speechtok data synth --out "$out" --config "$root/configs/data-corpus-v1.yaml" \
    --workers "${WORKERS:-1}" "$@"
