"""Run by tests/test_distributed.py under ``torch.distributed.run`` with 2 CPU processes (gloo).

Trains a tiny model (SiTok, HoliTok or AR+DiT) for a few steps with the real trainer, then writes, from rank 0, a JSON file
with every rank's parameter+buffer hash (all trained modules) and first-batch indices.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys

import torch
import torch.distributed as dist

from speechtok.models.sitok_config import get_preset
from speechtok.train.config import TrainConfig
from speechtok.train.trainer import RunSpec, Trainer


def spec(family: str, manifest: str, strategy: str, tokenizer: str) -> RunSpec:
    """A tiny run of one model family: SiTok (``sitok-rvq``: its residual-VQ variant), HoliTok stage III
    (GAN, flow and semantic heads, all DDP-wrapped) or the AR+DiT model over a HoliTok tokenizer."""
    # time_budget_s: the budget's fit decisions and fits are collective (a roomy budget: they keep the ceiling)
    train = TrainConfig(steps=3, lr=1e-3, warmup_steps=1, batch_seconds=8.0, max_seconds=4.0, log_every=1,
                        checkpoint_every=3, strategy=strategy, time_budget_s=1000.0)
    if family == "holitok":
        from speechtok.models.holitok_config import get_preset as holitok_preset
        from speechtok.train.holitok_recipe import HoliTokObjective

        train = dataclasses.replace(train, batch_seconds=2.0, segment_seconds=0.5)
        return RunSpec(holitok_preset("holitok-tiny"), train, manifest, kind="holitok", objective=HoliTokObjective(stage=3))
    if family == "ardit":
        from speechtok.models.ardit_config import get_preset as ardit_preset
        from speechtok.train.ardit_recipe import ARDiTObjective

        config = dataclasses.replace(ardit_preset("ardit-tiny"), tokenizer=tokenizer)
        return RunSpec(config, train, manifest, kind="ardit", objective=ARDiTObjective(tts_ratio=0.5))
    return RunSpec(get_preset("sitok-tiny-rvq4" if family == "sitok-rvq" else "sitok-tiny"), train, manifest)


def main(manifest: str, out_dir: str, strategy: str, family: str = "sitok", tokenizer: str = "") -> None:
    torch.set_num_threads(1)
    trainer = Trainer(spec(family, manifest, strategy, tokenizer), out_dir, progress=False)
    first_batch = trainer.batcher.epoch(0)[0]
    trainer.run()
    digest = hashlib.sha256()
    for name, module in sorted(trainer.modules.items()):  # the model and every auxiliary module
        for key, value in sorted(module.state_dict().items()):
            full = value.full_tensor() if hasattr(value, "full_tensor") else value
            digest.update(f"{name}.{key}".encode())
            digest.update(full.detach().float().contiguous().numpy().tobytes())
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": dist.get_rank(), "hash": digest.hexdigest(), "first_batch": first_batch})
    if dist.get_rank() == 0:
        with open(f"{out_dir}/replicas.json", "w") as handle:
            json.dump(gathered, handle)
    dist.barrier()
    dist.destroy_process_group()
    # Leave without running destructors: freeing the trainer (when main returns) makes torch 2.13
    # destroy the DDP reducer's gloo process group, whose worker thread can wait forever for the GIL
    # that the destructor holds (seen as 10-minute hangs after replicas.json was written).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
