"""Single-codebook quantisers with exactly ``log2(codebook_size)`` bits per token."""
from __future__ import annotations

from .base import QuantizerOutput
from .bsq import BinarySphericalQuantizer
from .vq import EMAVectorQuantizer

__all__ = ["QuantizerOutput", "EMAVectorQuantizer", "BinarySphericalQuantizer"]
