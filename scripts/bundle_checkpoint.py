"""Export a training checkpoint as a small inference checkpoint bundled inside the package.

    python scripts/bundle_checkpoint.py runs/sitok-small/checkpoints/step_0003000 sitok-small

Writes speechtok/checkpoints/<name>/ (config.json + fp16 model.safetensors, hash-pinned) and records
the training summary that `speechtok info <name>` prints: preset, steps, data (hours, utterances,
speakers, transcribed share) and the last training/validation metrics of the run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from speechtok.checkpoint import BUNDLED_DIR
from speechtok.data.manifest import read_manifest
from speechtok.models.sitok import SiTok
from speechtok.train.plots import read_metrics


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="training checkpoint directory (runs/.../checkpoints/step_N)")
    parser.add_argument("name", help="bundled name, e.g. sitok-small")
    args = parser.parse_args()
    source = Path(args.checkpoint)
    trainer = json.loads((source / "trainer.json").read_text())
    spec = trainer["spec"]
    metrics = read_metrics(source.parent.parent / "metrics.jsonl")
    last_train = next((r for r in reversed(metrics) if "loss" in r), {})
    last_valid = next((r for r in reversed(metrics) if "valid_flow" in r), {})
    keep = ("loss", "flow", "ctc", "vq", "codebook_usage", "perplexity")
    info = {
        "training": {
            "steps": trainer["step"],
            "train_data": data_summary(spec["train_manifest"]),
            "valid_data": data_summary(spec["valid_manifest"]) if spec.get("valid_manifest") else None,
            "recipe": {k: spec["train"][k] for k in ("lr", "warmup_steps", "batch_seconds", "max_seconds", "steps")},
            "final_train_metrics": {k: round(last_train[k], 4) for k in keep if k in last_train},
            "final_valid_metrics": {k: round(v, 4) for k, v in last_valid.items() if k != "step"},
        },
    }
    model = SiTok.from_pretrained(source)
    target = model.save_pretrained(BUNDLED_DIR / args.name, dtype=torch.float16, info=info)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"bundled {source} as {target} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
