"""Measure latent learnability of HoliTok checkpoints (see speechtok/eval/learnability.py).

    python scripts/latent_learnability.py CHECKPOINT [CHECKPOINT ...] \
        [--data data/splits/train.tsv] [--valid data/splits/dev.tsv] [--steps 500] [--limit 400]

Encodes every utterance to its posterior-mean latents, trains the same next-frame probe on each
representation for the same budget, and prints a markdown table (probe MSE, copy-last MSE, and the
untrained probe's MSE).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from speechtok.audio import load_audio
from speechtok.data.manifest import read_manifest
from speechtok.eval.learnability import probe
from speechtok.models.holitok import HoliTok

ROOT = Path(__file__).resolve().parents[1]


def latents(model: HoliTok, manifest: str, limit: int | None) -> list[torch.Tensor]:
    rows = read_manifest(manifest)[:limit]
    out = []
    for row in tqdm(rows, desc=f"encode {Path(manifest).name}", unit="file"):
        wav, rate = load_audio(row.path)
        out.append(model.encode(torch.from_numpy(wav)[None, None], rate)[0].T.float())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "train.tsv"))
    parser.add_argument("--valid", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--limit", type=int, default=400, help="training utterances to encode (default 400)")
    args = parser.parse_args()
    lines = ["| representation | probe valid MSE | copy-last MSE | untrained probe MSE | steps |", "|---|---|---|---|---|"]
    for checkpoint in args.checkpoints:
        model = HoliTok.from_pretrained(checkpoint)
        result = probe(latents(model, args.data, args.limit), latents(model, args.valid, None), steps=args.steps)
        lines.append(f"| {Path(checkpoint).name} | {result.valid_mse:.4f} | {result.copy_last_mse:.4f} |"
                     f" {result.initial_valid_mse:.4f} | {result.steps} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
