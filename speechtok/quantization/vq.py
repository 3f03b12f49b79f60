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

# The code search works on tiles of rows × codes whose distance block (1 MiB in fp32) stays in the
# core's L2 cache: a full [rows, 65,536] distance matrix is memory-bound and grows with the batch.
_ROW_TILE = 64
_CODE_TILE = 4096
_BLOCK = 64  # amin over blocks of this many codes, then an index search inside the winning block


def _first_min(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``dist.min(-1)``: each row's minimum and the first index holding it, about 3× faster on a CPU
    (a reduction with indices is not vectorised, ``amin`` is): minima of ``_BLOCK``-wide blocks, the
    first block holding the row minimum, then the first position inside that block."""
    rows, width = dist.shape
    if width % _BLOCK:
        return dist.min(-1)
    blocks = dist.view(rows, width // _BLOCK, _BLOCK)
    value, block = blocks.amin(-1).min(-1)
    inside = blocks.gather(1, block[:, None, None].expand(rows, 1, _BLOCK))[:, 0].argmin(-1)
    return value, block * _BLOCK + inside


def _search_tables(codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fp32 = codebook.float()
    return -2 * fp32, (fp32 * fp32).sum(-1)

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
        self._search_cache: tuple[torch.Tensor, tuple[int, int], tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def bits_per_token(self) -> int:
        return int(math.log2(self.codebook_size))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (Euclidean) for each row of ``z`` ``[N, D]``.

        ``argmin_k ‖c_k‖² + z·(−2·c_k)`` tile by tile (see ``_ROW_TILE``), with the first index winning
        ties as in one ``argmin``. Scaling by −2 is exact in floating point, so every distance is the
        same float as in the untiled ``‖c‖² − 2·z·c`` and the codes do not depend on tiling or batch
        size. Always in fp32: under bf16 autocast the distances to 65,536 codes would pick wrong codes.
        """
        scaled, code_sq = self._search_tables()
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            for start in range(0, z.shape[0], _ROW_TILE):
                rows = z[start:start + _ROW_TILE]
                values, indices = [], []
                for first in range(0, self.codebook_size, _CODE_TILE):
                    dist_sq = torch.mm(rows, scaled[first:first + _CODE_TILE].t()).add_(code_sq[first:first + _CODE_TILE])
                    value, index = _first_min(dist_sq)
                    values.append(value)
                    indices.append(index)
                tile = torch.stack(values, -1).argmin(-1, keepdim=True)  # the first tile holding the minimum
                out[start:start + _ROW_TILE] = torch.stack(indices, -1).gather(-1, tile)[:, 0] + tile[:, 0] * _CODE_TILE
        return out

    def _search_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``−2 ×`` the fp32 codebook and its squared norms, cached until the codebook changes.

        The cache holds the codebook tensor itself and its version counter, which every in-place change
        bumps (EMA updates, restarts, ``load_state_dict``, ``copy_``); ``.to()`` and friends install a
        new tensor. A codebook created under ``torch.inference_mode`` has no version counter and is
        never cached (recomputing the norms costs about a millisecond).
        """
        codebook = self.codebook
        if codebook.is_inference():
            self._search_cache = None
            return _search_tables(codebook)
        key = (codebook.data_ptr(), codebook._version)
        cache = self._search_cache
        if cache is None or cache[0] is not codebook or cache[1] != key:
            cache = self._search_cache = (codebook, key, _search_tables(codebook))
        return cache[2]

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
