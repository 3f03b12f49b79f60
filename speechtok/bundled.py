"""Where checkpoints are: a directory, or the name of a model bundled inside the package.

Kept free of torch so that the command line can list bundled models and tell a checkpoint's kind
(reading only its ``config.json``) without paying for the deep-learning stack.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import CheckpointError

CONFIG_FILE = "config.json"
BUNDLED_DIR = Path(__file__).resolve().parent / "checkpoints"


def bundled_names(kind: str | None = None) -> list[str]:
    """Checkpoints shipped inside the package, optionally only those of one model kind."""
    if not BUNDLED_DIR.is_dir():
        return []
    names = sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG_FILE).is_file())
    if kind is None:
        return names
    return [n for n in names if load_checkpoint_kind(BUNDLED_DIR / n) == kind]


def resolve(name_or_dir: str | os.PathLike[str]) -> Path:
    """A directory path, or the name of a checkpoint bundled inside the package."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if (BUNDLED_DIR / str(name_or_dir) / CONFIG_FILE).is_file():
        return BUNDLED_DIR / str(name_or_dir)
    if path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint directory (with {CONFIG_FILE}), got a file")
    raise CheckpointError(
        f"{name_or_dir}: no such checkpoint directory or bundled model (bundled: {', '.join(bundled_names()) or 'none'})")


def load_checkpoint_kind(name_or_dir: str | os.PathLike[str]) -> str | None:
    """The model kind a checkpoint's config.json declares (not verified; ``load_checkpoint`` does
    that); None when ``name_or_dir`` is no checkpoint."""
    try:
        return json.loads((resolve(name_or_dir) / CONFIG_FILE).read_text()).get("kind")
    except (CheckpointError, OSError, ValueError, AttributeError):
        return None
