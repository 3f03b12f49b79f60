"""Choose SiTok's decoding step count and token-CFG scale by measurement.

    python scripts/decoding_sweep.py [--checkpoint sitok-default] [--data data/splits/dev.tsv] [--limit 24]
                                     [--steps 4 8 16 32] [--cfg 1.0 1.5 2.0 3.0]

Evaluates every step count at CFG 1, then every CFG scale at the default step count, on the first
``--limit`` dev files with the harness (WER, STOI, speaker similarity, and the decoder's real-time
factor), and rewrites the ``decoding-sweep`` block of docs/sitok.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from speechtok.eval import evaluate
from speechtok.eval.summary import replace_marked_block
from speechtok.eval.systems import SiTokSystem

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="sitok-default")
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--default-steps", type=int, default=16)
    parser.add_argument("-o", "--output", default=str(ROOT / "runs" / "eval" / "sweep"))
    args = parser.parse_args()
    settings = [(s, 1.0) for s in args.steps] + [(args.default_steps, c) for c in args.cfg if c != 1.0]
    lines = ["| steps | CFG | WER % | STOI | SIM | seconds per file |", "|---|---|---|---|---|---|"]
    for steps, cfg in settings:
        system = SiTokSystem(args.checkpoint, steps=steps, cfg=cfg)
        start = time.perf_counter()
        result = evaluate([system], args.data, Path(args.output) / f"steps{steps}-cfg{cfg:g}", metrics="wer,stoi,sim",
                          limit=args.limit, html=False, progress=False)
        row = result.rows[0]
        per_file = (time.perf_counter() - start) / result.meta["files"]
        lines.append(f"| {steps} | {cfg:g} | {row['wer']:.1f} | {row['stoi']:.3f} | {row['sim']:.3f} | {per_file:.1f} |")
        print(lines[-1], flush=True)
    meta = result.meta
    block = "\n".join([
        f"Produced by `python scripts/decoding_sweep.py` on {meta['date']}: `{args.checkpoint}` with its own vocoder,"
        f" the first {meta['files']} files of `{Path(args.data).name}` ({meta['minutes']:.1f} min,"
        f" {meta['transcribed']} transcribed); seconds per file include the judges.", "", *lines])
    replace_marked_block(ROOT / "docs" / "sitok.md", "decoding-sweep", block)
    print("updated docs/sitok.md")


if __name__ == "__main__":
    main()
