"""Vector quantiser with an EMA-updated codebook and dead-code restart (SiTok's default).

The codebook is not trained by gradients: each step moves every used code towards the mean of the
encoder vectors assigned to it (exponential moving average), and codes whose EMA usage falls below
``dead_threshold`` are restarted on random encoder vectors from the current batch. Under
``torch.distributed`` the usage statistics are summed over all processes and the restart vectors
are broadcast from rank 0, so every replica holds exactly the same codebook.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .base import QuantizerOutput, code_perplexity, masked_mean

_DISTANCE_CHUNK = 512


class EMAVectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int = 65536, dim: int = 32, *, decay: float = 0.99,
                 commitment: float = 0.25, dead_threshold: float = 0.01, eps: float = 1e-5) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.decay = decay
        self.commitment = commitment
        self.dead_threshold = dead_threshold
        self.eps = eps
        self.register_buffer("codebook", torch.randn(codebook_size, dim) * 0.1)
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())

    @property
    def bits_per_token(self) -> int:
        return int(math.log2(self.codebook_size))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (Euclidean) for each row of ``z`` ``[N, D]``; chunked for memory.
        Always in fp32: under bf16 autocast the distances to 65,536 codes would pick wrong codes."""
        codebook = self.codebook.float()
        code_sq = (codebook * codebook).sum(-1)
        out = []
        with torch.autocast(z.device.type, enabled=False):
            for chunk in z.float().split(_DISTANCE_CHUNK):
                dist_sq = code_sq[None, :] - 2 * chunk @ codebook.t()
                out.append(dist_sq.argmin(-1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=z.device)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        flat = z.detach().reshape(-1, self.dim).float()
        indices = self.nearest(flat).view(z.shape[:-1])
        if self.training:
            valid = mask.reshape(-1) if mask is not None else torch.ones(flat.shape[0], dtype=torch.bool, device=z.device)
            self._ema_update(flat[valid], indices.reshape(-1)[valid])
        quantized = self.lookup(indices)
        loss = self.commitment * masked_mean((z - quantized.detach()) ** 2, mask)
        quantized = z + (quantized - z).detach()
        return QuantizerOutput(quantized, indices, loss, code_perplexity(indices, mask, self.codebook_size))

    @torch.no_grad()
    def _ema_update(self, vectors: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, vectors)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.codebook_size * self.eps) * total
        used = self.ema_count > 0
        self.codebook[used] = self.ema_sum[used] / smoothed[used, None]
        self._restart_dead(vectors)

    @torch.no_grad()
    def _restart_dead(self, vectors: torch.Tensor) -> None:
        """Move dead codes onto random encoder vectors; rank 0 chooses, every rank applies the same."""
        dead = torch.nonzero(self.ema_count < self.dead_threshold).squeeze(1)
        distributed = dist.is_available() and dist.is_initialized()
        count = torch.tensor([min(dead.numel(), vectors.shape[0])], device=vectors.device)
        if distributed:
            dist.broadcast(count, src=0)  # the dead set is identical everywhere; batch sizes are not
        n = int(count)
        if n == 0:
            return
        dead = dead[:n]
        if not distributed or dist.get_rank() == 0:
            replacements = vectors[torch.randperm(vectors.shape[0], device=vectors.device)[:n]].contiguous()
        else:
            replacements = torch.empty(n, self.dim, device=vectors.device, dtype=vectors.dtype)
        if distributed:
            dist.broadcast(replacements, src=0)
        self.codebook[dead] = replacements
        self.ema_count[dead] = 1.0
        self.ema_sum[dead] = replacements
