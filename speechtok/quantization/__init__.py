"""Quantisers with exactly ``log2(codebook_size)`` bits per token and codebook (the residual one stacks several)."""
from __future__ import annotations

from .base import QuantizerOutput
from .bsq import BinarySphericalQuantizer
from .rvq import ResidualQuantizerOutput, ResidualVectorQuantizer
from .vq import EMAVectorQuantizer

__all__ = ["QuantizerOutput", "EMAVectorQuantizer", "BinarySphericalQuantizer", "ResidualQuantizerOutput",
           "ResidualVectorQuantizer"]
