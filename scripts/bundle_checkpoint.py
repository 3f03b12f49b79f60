"""Export a checkpoint as a small (fp16) inference checkpoint bundled inside the package.

    python scripts/bundle_checkpoint.py runs/vocos-small/checkpoints/step_0002500 vocos-24k
    python scripts/bundle_checkpoint.py runs/sitok-small/checkpoints/step_0003000 sitok-default --vocoder vocos-24k
    python scripts/bundle_checkpoint.py speechtok/checkpoints/sitok-small sitok-default --vocoder vocos-24k

Writes speechtok/checkpoints/<name>/ (or --out-dir/<name>/; config.json + fp16 model.safetensors, hash-pinned). From a
training checkpoint it records the summary that `speechtok info <name>` prints (preset, steps,
data, recipe, final metrics); from an inference checkpoint it keeps that checkpoint's summary.
``--vocoder`` pairs a SiTok checkpoint with a bundled vocoder (loaded by ``from_pretrained``).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from speechtok.bundled import BUNDLED_DIR
from speechtok.checkpoint import load_checkpoint
from speechtok.data.manifest import read_manifest
from speechtok.models.sitok import SiTok
from speechtok.train.plots import read_metrics
from speechtok.vocoder.vocos import Vocos

MODELS = {"sitok": SiTok, "vocos": Vocos}
FINAL_METRICS = {"sitok": ("loss", "flow", "ctc", "vq", "codebook_usage", "perplexity"),
                 "vocos": ("loss", "mel", "adv", "fm", "disc")}


def data_summary(manifest: str) -> dict:
    rows = read_manifest(manifest)
    return {
        "manifest": Path(manifest).name,
        "hours": round(sum(r.seconds for r in rows) / 3600, 3),
        "utterances": len(rows),
        "speakers": len({r.speaker for r in rows}),
        "transcribed_utterances": sum(1 for r in rows if r.transcript),
        "sources": sorted({r.path.parent.name for r in rows}),
    }


def training_summary(source: Path, kind: str) -> dict:
    trainer = json.loads((source / "trainer.json").read_text())
    spec = trainer["spec"]
    metrics = read_metrics(source.parent.parent / "metrics.jsonl")
    upto = [r for r in metrics if r["step"] <= trainer["step"]]
    last_train = next((r for r in reversed(upto) if "loss" in r), {})
    last_valid = next((r for r in reversed(upto) if any(k.startswith("valid_") for k in r)), {})
    recipe = ("lr", "warmup_steps", "batch_seconds", "max_seconds" if kind == "sitok" else "segment_seconds", "steps")
    return {
        "steps": trainer["step"],
        "train_data": data_summary(spec["train_manifest"]),
        "valid_data": data_summary(spec["valid_manifest"]) if spec.get("valid_manifest") else None,
        "recipe": {k: spec["train"][k] for k in recipe},
        "final_train_metrics": {k: round(last_train[k], 4) for k in FINAL_METRICS[kind] if k in last_train},
        "final_valid_metrics": {k: round(v, 4) for k, v in last_valid.items() if k != "step"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="training checkpoint (runs/.../checkpoints/step_N) or inference checkpoint")
    parser.add_argument("name", help="bundled name, e.g. sitok-default or vocos-24k")
    parser.add_argument("--vocoder", help="bundled vocoder that a SiTok checkpoint decodes with")
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_DIR,
                        help="folder that receives <name>/ (default: the package's bundled checkpoints; e.g."
                             " checkpoints/ for an export kept in the repository but not shipped)")
    args = parser.parse_args()
    source = Path(args.checkpoint)
    loaded = load_checkpoint(source, expected_kind=None)
    info = dict(loaded.info)
    if (source / "trainer.json").is_file():
        info = {"training": training_summary(source, loaded.kind)}
    info.pop("quality", None)  # measured again for the new bundle (scripts/quality_table.py)
    if args.vocoder:
        if loaded.kind != "sitok":
            parser.error("--vocoder applies to SiTok checkpoints")
        info["vocoder"] = args.vocoder
    model = MODELS[loaded.kind].from_pretrained(source)
    target = args.out_dir / args.name
    staging = args.out_dir / f".{args.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, dtype=torch.float16, info=info)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"bundled {source} as {target} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
