"""Binary spherical quantiser: ``bits`` signs of an L2-normalised vector form the code.

Lookup-free (no codebook parameters) and exactly ``bits`` bits per token; the option SiTok's
appendix pseudocode instantiates with 16 bits. Vectors are projected onto the unit sphere and
quantised to the nearest corner ``±1/sqrt(bits)``, which is also on the sphere.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import QuantizerOutput, code_perplexity, masked_mean


class BinarySphericalQuantizer(nn.Module):
    def __init__(self, bits: int = 16, *, commitment: float = 0.25) -> None:
        super().__init__()
        self.bits = bits
        self.dim = bits
        self.codebook_size = 2**bits
        self.commitment = commitment
        self.register_buffer("powers", 2 ** torch.arange(bits), persistent=False)

    @property
    def bits_per_token(self) -> int:
        return self.bits

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        bits = (indices[..., None] // self.powers) % 2
        return (bits.float() * 2 - 1) / math.sqrt(self.bits)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        z = F.normalize(z, dim=-1)
        positive = z >= 0
        indices = (positive.long() * self.powers).sum(-1)
        quantized = (positive.float() * 2 - 1) / math.sqrt(self.bits)
        loss = self.commitment * masked_mean((z - quantized.detach()) ** 2, mask)
        quantized = z + (quantized - z).detach()
        return QuantizerOutput(quantized, indices, loss, code_perplexity(indices, mask, self.codebook_size))
