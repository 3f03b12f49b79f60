"""Split voices of a data-engine corpus into training rows and held-out sentences.

    python scripts/voice_split.py CORPUS/manifest.tsv [--sources hibari hibari_aug] [--valid-from hibari]
                                  [--valid 48] [--seed 7] [--out-dir CORPUS]

Validation: ``--valid`` transcribed rows of 1–12 s of the ``--valid-from`` source, drawn with ``--seed``.
Training: every transcribed row of ``--sources`` whose sentence is none of theirs, so augmented copies of
a held-out sentence stay out too. Writes OUT_DIR/VALID_FROM-train.tsv and -valid.tsv (paths relative to
OUT_DIR), the single-voice TTS runs of docs/ardit.md ("The text aligner"); refuses to overwrite them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from speechtok.data.engine_config import source_of
from speechtok.data.manifest import read_manifest, write_manifest
from speechtok.errors import SpeechtokError


def _sentence(text: str) -> str:
    return " ".join(text.lower().split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", help="the corpus manifest (speechtok data synth's manifest.tsv)")
    parser.add_argument("--sources", nargs="+", default=["hibari", "hibari_aug"])
    parser.add_argument("--valid-from", default="hibari")
    parser.add_argument("--valid", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out-dir", help="default: the manifest's folder")
    args = parser.parse_args()
    out_dir = Path(args.out_dir or Path(args.manifest).parent)
    outputs = [out_dir / f"{args.valid_from}-{split}.tsv" for split in ("train", "valid")]
    try:
        if existing := [str(p) for p in outputs if p.exists()]:
            raise SpeechtokError(f"{', '.join(existing)}: already there (remove to redraw the split)")
        rows = [r for r in read_manifest(args.manifest) if r.transcript and source_of(r.path) in args.sources]
        candidates = [r for r in rows if source_of(r.path) == args.valid_from and 1.0 <= r.seconds <= 12.0]
        if args.valid < 1 or len(candidates) < args.valid:
            raise SpeechtokError(f"{args.manifest}: {len(candidates)} transcribed {args.valid_from} rows of 1-12 s,"
                                 f" cannot hold out {args.valid}")
    except SpeechtokError as error:
        parser.exit(2, f"error: {error}\n")
    picked = sorted(np.random.default_rng(args.seed).choice(len(candidates), args.valid, replace=False))
    valid = [candidates[i] for i in picked]
    held_out = {_sentence(r.transcript) for r in valid}
    train = [r for r in rows if _sentence(r.transcript) not in held_out]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(outputs[0], train)
    write_manifest(outputs[1], valid)
    print(f"{outputs[0]}: {len(train)} rows ({sum(r.seconds for r in train) / 3600:.2f} h); {outputs[1]}: {len(valid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
