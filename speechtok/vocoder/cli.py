"""Vocoder commands: ``mel`` (audio → log-mel .npy) and ``vocode`` (log-mel .npy → audio).

Mel files hold SiTok's normalised 24 kHz / hop 480 / 128-bin log-mel as float32 ``[128, F]``,
so a mel decoded by any SiTok model can be vocoded on its own, and vice versa.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio, save_audio
from ..errors import DataError
from ..fileio import atomic_path, load_npy
from ..mel import MelSpectrogram
from .griffin_lim import GriffinLim
from .vocos import Vocos

DEFAULT_VOCODER = "vocos-24k"


def add_vocoder_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mel", help="audio file → normalised log-mel (.npy)",
                              description="Compute the 24 kHz / 50 Hz / 128-bin normalised log-mel that SiTok and the vocoder use.")
    p.add_argument("input", help="audio file (any rate; mixed down to mono)")
    p.add_argument("-o", "--output", required=True, help="mel file to write (.npy, float32 [128, F])")
    p.set_defaults(func=_mel)

    p = subparsers.add_parser("vocode", help="log-mel (.npy) → audio file with the neural vocoder",
                              description="Turn a normalised log-mel [128, F] (from 'speechtok mel' or a SiTok decoder) into 24 kHz audio.")
    p.add_argument("input", help="mel file (.npy, float32 [128, F])")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav, .flac or .ogg)")
    p.add_argument("--vocoder", default=DEFAULT_VOCODER,
                   help=f"vocoder checkpoint directory or bundled name, or 'griffin-lim' (the explicit"
                        f" no-training fallback) (default: {DEFAULT_VOCODER})")
    p.set_defaults(func=_vocode)


def _mel(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.suffix != ".npy":
        raise DataError(f"{output}: mel files must end in .npy")
    front_end = MelSpectrogram()
    wav, _ = load_audio(args.input, front_end.cfg.sample_rate)
    with torch.no_grad():
        mel = front_end(torch.from_numpy(wav)[None, None])[0]
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, mel.numpy().astype(np.float32))
    print(f"{output}: {mel.shape[-1]} frames × {mel.shape[0]} bins at {front_end.cfg.frame_rate:g} Hz")
    return 0


def _vocode(args: argparse.Namespace) -> int:
    path = Path(args.input)
    mel = load_npy(path, "mel")
    if args.vocoder == "griffin-lim":
        front_end = MelSpectrogram()
        config, synthesise = front_end.cfg, lambda x: GriffinLim(front_end.cfg)(front_end.denormalize(x))
    else:
        vocoder = Vocos.from_pretrained(args.vocoder)
        config, synthesise = vocoder.config.mel, vocoder.vocode
    if mel.ndim != 2 or mel.shape[0] != config.n_mels or not np.issubdtype(mel.dtype, np.floating):
        raise DataError(f"{path}: expected a float array [{config.n_mels}, F], got {mel.dtype} {list(mel.shape)}")
    if mel.shape[1] == 0 or not np.isfinite(mel).all():
        raise DataError(f"{path}: the mel is empty or holds NaN/Inf")
    wav = synthesise(torch.from_numpy(mel.astype(np.float32))[None])
    save_audio(args.output, wav[0, 0], config.sample_rate)
    print(f"{args.output}: {wav.shape[-1] / config.sample_rate:.2f} s at {config.sample_rate} Hz")
    return 0
