"""Evaluation of speech tokenizers and codecs: WER/CER with a real ASR judge, STOI/ESTOI, PESQ,
speaker similarity, DNSMOS, log-mel distance, MCD, bitrate and codebook statistics.

Python: ``from speechtok.eval import evaluate``; command line: ``speechtok eval``.
Judges and metric libraries are imported only when a metric needs them (``pip install 'speechtok[eval]'``).
"""
from __future__ import annotations

from .pipeline import EvalResult, evaluate
from .runner import DEFAULT_GROUPS, METRIC_GROUPS
from .systems import get_system

__all__ = ["DEFAULT_GROUPS", "METRIC_GROUPS", "EvalResult", "evaluate", "get_system"]
