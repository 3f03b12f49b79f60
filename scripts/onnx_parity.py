"""Measure how close an ONNX export (``speechtok export onnx``) is to PyTorch on tests/data speech.

    python scripts/onnx_parity.py CHECKPOINT EXPORT_DIR [--steps N --cfg X]

Prints the number of differing codes, and the largest differences of the decoded mel, the decoded
audio and the vocoder alone (same noise as PyTorch). Thin: the numpy decode loop is docs/onnx.md's.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import torch

from speechtok.audio import load_audio, resample
from speechtok.models.sitok import SiTok

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("export_dir")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", type=float)
    args = parser.parse_args()
    doc: dict = {"__name__": "docs_onnx"}
    exec(re.search(r"```python\n(.*?)```", (REPO / "docs" / "onnx.md").read_text(), re.S).group(1), doc)
    manifest, sessions = doc["load_export"](args.export_dir)
    model = SiTok.from_pretrained(args.checkpoint)
    tokens = differing = 0
    seconds = {"onnx": 0.0, "torch": 0.0}
    for path in sorted((REPO / "tests" / "data").glob("*.flac")):
        wav, rate = load_audio(path)
        wav = resample(wav, rate, model.sample_rate)[None, None]
        start = time.perf_counter()
        codes = doc["sitok_encode"](sessions, wav)
        seconds["onnx"] += time.perf_counter() - start
        start = time.perf_counter()
        expected = model.encode(torch.from_numpy(wav), model.sample_rate).numpy()
        seconds["torch"] += time.perf_counter() - start
        tokens += codes.size
        differing += int((codes != expected).sum())
    print(f"codes: {differing} of {tokens} differ (encode time onnx {seconds['onnx']:.2f} s, torch {seconds['torch']:.2f} s)")
    codes_t = torch.from_numpy(codes)
    noise = torch.randn(1, codes.shape[-1], model.decoder_in.in_features, generator=torch.Generator().manual_seed(0))
    audio, mel = doc["sitok_decode"](manifest, sessions, codes, steps=args.steps, cfg=args.cfg, noise=noise.numpy())
    mel_t = model.decode_mel(codes_t, steps=args.steps, cfg=args.cfg)
    print(f"decoded mel: max |diff| {np.abs(mel - mel_t.numpy()).max():.2e} (values up to {mel_t.abs().max():.2f})")
    print(f"decoded audio: max |diff| {np.abs(audio - model.vocode(mel_t).numpy()).max():.2e}")
    mel_real = model.mel(torch.from_numpy(wav))
    vocoded = sessions["vocoder"].run(None, {"mel": mel_real.numpy()})[0]
    print(f"vocoder on real mel: max |diff| {np.abs(vocoded - model.vocode(mel_real).numpy()).max():.2e}")


if __name__ == "__main__":
    main()
