"""Process-group setup for ``torchrun`` (gloo on CPU, NCCL on GPU) and model wrapping (DDP / FSDP)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

FSDP_MIN_PARAMETERS = 300_000_000


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup() -> DistInfo:
    """Read torchrun's environment; initialise the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def choose_strategy(requested: str, model: nn.Module) -> str:
    if requested != "auto":
        return requested
    n = sum(p.numel() for p in model.parameters())
    return "fsdp" if n >= FSDP_MIN_PARAMETERS else "ddp"


def wrap(model: nn.Module, info: DistInfo, strategy: str, *, find_unused: bool = False) -> nn.Module:
    """DDP (buffers are kept in sync by the quantiser itself) or FSDP2 sharding per transformer block.

    ``find_unused`` lets DDP skip parameters a step did not use (an auxiliary head whose batch had
    nothing to learn from, e.g. HoliTok's CTC head when no crop kept its transcript).
    """
    if not info.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from ..modules.transformer import TransformerBlock

        for module in model.modules():
            if isinstance(module, TransformerBlock):
                fully_shard(module)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False,
                                   find_unused_parameters=find_unused)


def all_reduce_mean(window: dict[str, tuple[float, int]], info: DistInfo) -> dict[str, float]:
    """Mean of each metric over every (rank, step) that reported it, from per-rank ``(sum, count)``.

    Ranks may report different metrics (a rank whose batch had no ASR item has no ASR loss), so
    the key sets are gathered first; every rank then reduces the same vector.
    """
    if not info.enabled:
        return {k: total / count for k, (total, count) in window.items() if count}
    key_sets: list = [None] * info.world_size
    dist.all_gather_object(key_sets, sorted(window))
    keys = sorted(set().union(*key_sets))
    if not keys:
        return {}
    tensor = torch.tensor([list(window.get(k, (0.0, 0))) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return {k: total / count for k, (total, count) in zip(keys, tensor.tolist()) if count}


def all_reduce_int(value: int, op: dist.ReduceOp, info: DistInfo) -> int:
    """One integer agreed by every rank (``op``: MIN, MAX, ...); the value itself in a single process."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], device=info.device)
    dist.all_reduce(tensor, op=op)
    return int(tensor.item())
