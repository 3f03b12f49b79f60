"""Run by tests/test_distributed.py under ``torch.distributed.run`` with 2 CPU processes (gloo).

Trains a tiny SiTok for a few steps with the real trainer, then writes, from rank 0, a JSON file
with every rank's parameter+buffer hash and first-batch indices.
"""
from __future__ import annotations

import hashlib
import json
import sys

import torch
import torch.distributed as dist

from speechtok.models.sitok_config import get_preset
from speechtok.train.config import TrainConfig
from speechtok.train.trainer import RunSpec, Trainer


def main(manifest: str, out_dir: str, strategy: str) -> None:
    torch.set_num_threads(1)
    train = TrainConfig(steps=3, lr=1e-3, warmup_steps=1, batch_seconds=8.0, max_seconds=4.0, log_every=1,
                        checkpoint_every=3, strategy=strategy)
    trainer = Trainer(RunSpec(get_preset("sitok-tiny"), train, manifest), out_dir, progress=False)
    first_batch = trainer.batcher.epoch(0)[0]
    trainer.run()
    digest = hashlib.sha256()
    for key, value in sorted(trainer.model.state_dict().items()):
        full = value.full_tensor() if hasattr(value, "full_tensor") else value
        digest.update(key.encode())
        digest.update(full.detach().float().contiguous().numpy().tobytes())
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": dist.get_rank(), "hash": digest.hexdigest(), "first_batch": first_batch})
    if dist.get_rank() == 0:
        with open(f"{out_dir}/replicas.json", "w") as handle:
            json.dump(gathered, handle)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
