"""Handlers of the vocoder commands (parsers in :mod:`.cli`): imported only when a command runs."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..audio import AUDIO_FORMATS, load_audio, save_audio
from ..errors import DataError
from ..fileio import atomic_path, check_output, load_npy
from ..mel import MelSpectrogram
from .griffin_lim import GriffinLim
from .vocos import Vocos


def mel(args: argparse.Namespace) -> int:
    output = check_output(args.output, inputs=[args.input], suffixes=(".npy",), what="mel file")
    front_end = MelSpectrogram()
    wav, _ = load_audio(args.input, front_end.cfg.sample_rate)
    with torch.no_grad():
        mel = front_end(torch.from_numpy(wav)[None, None])[0]
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, mel.numpy().astype(np.float32))
    print(f"{output}: {mel.shape[-1]} frames × {mel.shape[0]} bins at {front_end.cfg.frame_rate:g} Hz")
    return 0


def vocode(args: argparse.Namespace) -> int:
    check_output(args.output, inputs=[args.input], suffixes=tuple(AUDIO_FORMATS), what="audio output")
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
