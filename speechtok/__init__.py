"""speechtok: speech tokenizers (SiTok, HoliTok) you can train, evaluate and ship."""
from __future__ import annotations

__version__ = "0.1.0"
