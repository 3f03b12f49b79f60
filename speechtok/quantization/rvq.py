"""Residual vector quantiser: ``levels`` EMA codebooks, each quantising what the previous ones left over.

Level 0 quantises the encoder vector, level ``l`` the residual after levels ``0..l-1``; the decoder reads
the sum of the chosen codes, so the first ``k`` codes of a position are a coarser description of it.
Training applies quantiser dropout: each item keeps only its first ``k`` levels, ``k`` drawn uniformly
from ``1..levels`` (for a fraction ``dropout`` of the items; the others keep all), so one model decodes
from any prefix of its codebooks. Every level is an :class:`EMAVectorQuantizer` that runs on every step
and every process, dropped items being masked out of its statistics, so under ``torch.distributed`` the
codebooks stay identical on every replica exactly as the single VQ's do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import QuantizerOutput
from .vq import EMAVectorQuantizer


@dataclass
class ResidualQuantizerOutput(QuantizerOutput):
    """``indices`` are ``[B, T, levels]`` (every level, dropped or not, as ``encode`` emits them);
    ``perplexity`` is level 0's and ``level_perplexity`` ``[levels]`` each level's over the positions
    that kept it."""

    level_perplexity: torch.Tensor


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, levels: int, codebook_size: int, dim: int, *, dropout: float = 1.0, decay: float = 0.99,
                 commitment: float = 0.25, dead_threshold: float = 0.01) -> None:
        super().__init__()
        if levels < 1 or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"need levels >= 1 and 0 <= dropout <= 1, got {levels} and {dropout}")
        self.levels = nn.ModuleList(
            EMAVectorQuantizer(codebook_size, dim, decay=decay, commitment=commitment, dead_threshold=dead_threshold)
            for _ in range(levels))
        self.codebook_size = codebook_size
        self.dim = dim
        self.dropout = dropout

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def bits_per_token(self) -> int:
        """Bits of one position over all levels."""
        return sum(level.bits_per_token for level in self.levels)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Sum of the codes of the first ``k`` levels for ``indices`` ``[..., k]``, ``1 <= k <= levels``."""
        out = self.levels[0].lookup(indices[..., 0])
        for level, idx in zip(self.levels[1:], indices[..., 1:].unbind(-1)):
            out = out + level.lookup(idx)
        return out

    def kept_levels(self, batch: int, device: torch.device) -> torch.Tensor:
        """How many leading levels each item keeps ``[B]``: all in eval mode; in training ``k ~ U{1..levels}``
        for a fraction ``dropout`` of the items."""
        every = torch.full((batch,), self.num_levels, device=device)
        if not self.training or self.num_levels == 1 or self.dropout == 0.0:
            return every
        drawn = torch.randint(1, self.num_levels + 1, (batch,), device=device)
        return torch.where(torch.rand(batch, device=device) < self.dropout, drawn, every)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> ResidualQuantizerOutput:
        kept = self.kept_levels(z.shape[0], z.device)
        residual, total = z, torch.zeros_like(z)
        indices, losses, perplexities = [], [], []
        for l, level in enumerate(self.levels):
            keeps = kept > l  # [B]
            active = keeps[:, None].expand(z.shape[:2])
            out = level(residual, active if mask is None else active & mask)
            code = level.lookup(out.indices)
            total = total + code * keeps[:, None, None].to(code.dtype)
            residual = residual - code  # the codes carry no gradient; the residual keeps z's
            indices.append(out.indices)
            losses.append(out.loss)
            perplexities.append(out.perplexity)
        quantized = z + (total - z).detach()  # straight-through: the decoder's gradient reaches z once
        level_perplexity = torch.stack(perplexities)
        return ResidualQuantizerOutput(quantized, torch.stack(indices, -1), torch.stack(losses).sum(),
                                       level_perplexity[0], level_perplexity)
