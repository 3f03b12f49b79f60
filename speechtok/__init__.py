"""speechtok: speech tokenizers (SiTok, HoliTok) you can train, evaluate and ship.

    import speechtok
    model = speechtok.load("sitok-default")          # any bundled name or checkpoint directory
    codes = model.encode(wav[None, None], sample_rate)  # [B, 1, T] audio → [B, K, T'] codes
    audio = model.decode(codes)                     # → [B, 1, T] at model.sample_rate

The main classes are one import away (``speechtok.SiTok``, ``speechtok.HoliTok``,
``speechtok.Vocos``) but load on first use, so ``import speechtok`` itself imports no torch.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .models.ardit import ARDiT
    from .models.holitok import HoliTok
    from .models.sitok import SiTok
    from .vocoder.vocos import Vocos

_CLASSES = {"SiTok": ".models.sitok", "HoliTok": ".models.holitok", "Vocos": ".vocoder.vocos",
            "ARDiT": ".models.ardit"}
#: Checkpoint kind (config.json "kind") → the class that loads it.
_KINDS = {"sitok": "SiTok", "holitok": "HoliTok", "vocos": "Vocos", "ardit": "ARDiT"}

__all__ = ["ARDiT", "HoliTok", "SiTok", "Vocos", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(name_or_dir: str | Path, *, map_location: str = "cpu") -> SiTok | HoliTok | Vocos | ARDiT:
    """The model of any bundled name or checkpoint directory, as the class its ``config.json`` names
    (verified by hash on load)."""
    from .bundled import load_checkpoint_kind, resolve
    from .errors import CheckpointError

    directory = resolve(name_or_dir)
    kind = load_checkpoint_kind(directory)
    if kind not in _KINDS:
        raise CheckpointError(f"{directory}: unknown model kind {kind!r} (known: {', '.join(_KINDS)})")
    return __getattr__(_KINDS[kind]).from_pretrained(directory, map_location=map_location)
