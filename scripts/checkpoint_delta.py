"""Carry an inference checkpoint as its difference from another one (a lent GPU's 64 MiB return path).

    python scripts/checkpoint_delta.py diff EXPORT BASE DELTA   # DELTA/: changed.safetensors, keys.json, config.json
    python scripts/checkpoint_delta.py apply DELTA BASE OUT     # OUT/: the export again, its sha256 checked

A decoder-stage fine-tune changes only the decoder, so its delta from the checkpoint it started from is
about 40 % of the weights. ``apply`` rebuilds the export byte for byte (fp16, sorted header) and refuses
a result whose hash differs from the one the export recorded.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from speechtok.bundled import resolve
from speechtok.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint
from speechtok.config import from_dict
from speechtok.train.families import family


def diff(export: Path, base: Path, delta: Path) -> None:
    new = load_file(str(export / WEIGHTS_FILE))
    old = load_file(str(base / WEIGHTS_FILE))
    changed = {k: v for k, v in new.items() if k not in old or not torch.equal(old[k], v)}
    delta.mkdir(parents=True, exist_ok=True)
    save_file(changed, str(delta / "changed.safetensors"))
    (delta / "keys.json").write_text(json.dumps(sorted(new)))
    shutil.copy(export / "config.json", delta / "config.json")
    print(f"{export}: {len(changed)} of {len(new)} tensors differ from {base}")


def apply(delta: Path, base: Path, out: Path) -> None:
    meta = json.loads((delta / "config.json").read_text())
    weights = load_file(str(base / WEIGHTS_FILE))
    weights.update(load_file(str(delta / "changed.safetensors")))
    keys = json.loads((delta / "keys.json").read_text())
    missing = [k for k in keys if k not in weights]
    if missing:
        sys.exit(f"{base}: lacks {len(missing)} of the export's tensors (e.g. {missing[0]}): wrong base?")
    dtype = getattr(torch, meta["weights"]["dtype"])
    config = from_dict(family(meta["kind"]).config_class, meta["config"], "config")
    staging = out.with_name(f".{out.name}.tmp")  # renamed into place only once its hash is the export's
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(staging, meta["kind"], config, {k: weights[k] for k in keys}, dtype=dtype, info=meta["info"])
    rebuilt = json.loads((staging / "config.json").read_text())["weights"]["sha256"]
    if rebuilt != meta["weights"]["sha256"]:
        shutil.rmtree(staging)
        sys.exit(f"{out}: the rebuilt weights differ from the export's (sha256 {rebuilt[:12]}… vs"
                 f" {meta['weights']['sha256'][:12]}…): wrong base?")
    load_checkpoint(staging, expected_kind=meta["kind"])
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    print(f"rebuilt {out} (sha256 {rebuilt[:12]}…)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("diff", "apply"))
    parser.add_argument("source", type=Path, help="diff: the export; apply: the delta folder")
    parser.add_argument("base", help="the checkpoint both start from (a bundled name or a folder)")
    parser.add_argument("out", type=Path, help="diff: the delta folder; apply: the rebuilt checkpoint")
    args = parser.parse_args()
    base = resolve(args.base)
    (diff if args.action == "diff" else apply)(args.source, base, args.out)


if __name__ == "__main__":
    main()
