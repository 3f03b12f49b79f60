"""Vocoder commands: ``mel`` (audio → log-mel .npy) and ``vocode`` (log-mel .npy → audio).

Mel files hold SiTok's normalised 24 kHz / hop 480 / 128-bin log-mel as float32 ``[128, F]``,
so a mel decoded by any SiTok model can be vocoded on its own, and vice versa.
Only the argument parsers live here (no torch); the handlers are in :mod:`.commands`.
"""
from __future__ import annotations

import argparse

DEFAULT_VOCODER = "vocos-24k"
HANDLERS = "speechtok.vocoder.commands"


def add_vocoder_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mel", help="audio file → normalised log-mel (.npy)",
                              description="Compute the 24 kHz / 50 Hz / 128-bin normalised log-mel that SiTok and the vocoder use.")
    p.add_argument("input", help="audio file (any rate; mixed down to mono)")
    p.add_argument("-o", "--output", required=True, help="mel file to write (.npy, float32 [128, F])")
    p.set_defaults(func=f"{HANDLERS}:mel")

    p = subparsers.add_parser("vocode", help="log-mel (.npy) → audio file with the neural vocoder",
                              description="Turn a normalised log-mel [128, F] (from 'speechtok mel' or a SiTok decoder) into 24 kHz audio.")
    p.add_argument("input", help="mel file (.npy, float32 [128, F])")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav, .flac or .ogg)")
    p.add_argument("--vocoder", default=DEFAULT_VOCODER,
                   help=f"vocoder checkpoint directory or bundled name, or 'griffin-lim' (the explicit"
                        f" no-training fallback) (default: {DEFAULT_VOCODER})")
    p.set_defaults(func=f"{HANDLERS}:vocode")
