"""Tokenizer statistics: token rate, bits per token, bitrate, codebook usage and entropy.

Usage and entropy are properties of the whole evaluation set, not of one file, so per-file code
histograms are kept and merged at summary time.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class CodebookStats:
    """How much of the codebook a tokenizer uses on a data set."""

    tokens: int
    used: int
    codebook_size: int
    entropy_bits: float

    @property
    def usage(self) -> float:
        """Fraction of codebook entries that occur at least once."""
        return self.used / self.codebook_size

    @property
    def entropy_fraction(self) -> float:
        """Entropy relative to a uniform code, ``log2(codebook_size)`` bits (1.0 = perfectly spread)."""
        return self.entropy_bits / math.log2(self.codebook_size) if self.codebook_size > 1 else 0.0


def histogram(codes: Iterable[int]) -> dict[str, int]:
    """Count codes; keys are strings so the histogram survives a JSON round trip unchanged."""
    return {str(code): count for code, count in Counter(int(c) for c in codes).items()}


def codebook_stats(histograms: Iterable[Mapping[str, int]], codebook_size: int) -> CodebookStats:
    """Merge per-file histograms and measure usage and empirical entropy (bits per token)."""
    total: Counter[str] = Counter()
    for hist in histograms:
        total.update(hist)
    n = sum(total.values())
    entropy = -sum(c / n * math.log2(c / n) for c in total.values() if c) if n else 0.0
    return CodebookStats(n, sum(1 for c in total.values() if c), codebook_size, entropy)
