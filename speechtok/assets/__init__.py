"""Bundled data files (see CREDITS.md)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
SAMPLE_SPEECH = ASSETS / "librispeech_84-121123-0001.flac"
SAMPLE_TRANSCRIPT = "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED BENEATH AN EXTRAORDINARY WEIGHT"
