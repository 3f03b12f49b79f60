"""Evaluation of speech tokenizers and codecs: WER/CER with a real ASR judge, STOI/ESTOI, PESQ,
speaker similarity, DNSMOS, log-mel distance, MCD, bitrate and codebook statistics.

Python: ``from speechtok.eval import evaluate``; command line: ``speechtok eval``.
Judges and metric libraries are imported only when a metric needs them (``pip install 'speechtok[eval]'``);
the names below are resolved on first use, so importing this package costs nothing.
"""
from __future__ import annotations

import importlib
from typing import Any

from .groups import DEFAULT_GROUPS, METRIC_GROUPS

_LAZY = {"EvalResult": ".pipeline", "evaluate": ".pipeline", "get_system": ".systems"}

__all__ = ["DEFAULT_GROUPS", "METRIC_GROUPS", "EvalResult", "evaluate", "get_system"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
