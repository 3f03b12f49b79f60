"""A quick look at a HoliTok mel-head checkpoint during training: STOI against the input on the first
N LibriSpeech files of the dev split, beside the model's ceiling (its vocoder on the true mel).

    python scripts/holitok_stoi_check.py runs/holitok-mel-s3/checkpoints/step_0001500 [--files 12] [--bypass]

``--bypass`` decodes the encoder output directly (stage I trains with the bottleneck bypassed, so its
bottleneck is untrained); otherwise the posterior mean goes through the bottleneck as in ``reconstruct``.
STOI is pystoi's at 16 kHz on soxr-resampled signals, the mel L1 the normalised-mel distance the mel
head trains on. It is a training-time check, not the evaluation: ``scripts/eval_table.py`` is that.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from speechtok.audio import load_audio
from speechtok.data.manifest import read_manifest
from speechtok.mel import MelSpectrogram
from speechtok.models.holitok import HoliTok
from speechtok.waveform import resample_batch

ROOT = Path(__file__).resolve().parents[1]


def at(wav: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    return resample_batch(wav, torch.tensor([wav.shape[-1]]), rate, target)[0]


def main() -> None:
    from pystoi import stoi

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--bypass", action="store_true", help="stage I: decode the encoder output, no bottleneck")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = HoliTok.from_pretrained(args.checkpoint).eval()
    if model.config.decoder_head != "mel":
        raise SystemExit(f"{args.checkpoint}: not a mel-head HoliTok")
    rows = [r for r in read_manifest(args.data) if "librispeech" in r.path.parent.name][: args.files]
    vocoder, mel_front = model.vocoder, MelSpectrogram(model.config.mel)
    model_stoi, ceiling, distance = [], [], []
    for row in rows:
        wav, _ = load_audio(row.path, model.sample_rate)
        x = torch.from_numpy(wav)[None, None]
        with torch.inference_mode():
            if args.bypass:
                mel = model.decoder(model.encoder(x))
                out = model.upsampler(vocoder(mel))
            else:
                out = model.reconstruct(x, model.sample_rate)
                mel = model.synthesize(model.encode(x, model.sample_rate))
            true = mel_front(at(x, model.sample_rate, model.config.mel.sample_rate))
            frames = min(true.shape[-1], mel.shape[-1])
            distance.append(float((true[..., :frames] - mel[..., :frames]).abs().mean()))
            copy = model.upsampler(vocoder(true))
        n = x.shape[-1]
        reference = at(x, model.sample_rate, 16000)[0, 0].numpy()
        model_stoi.append(stoi(reference, at(out[..., :n], model.sample_rate, 16000)[0, 0].numpy(), 16000))
        ceiling.append(stoi(reference, at(copy[..., :n], model.sample_rate, 16000)[0, 0].numpy(), 16000))
    print(f"{args.checkpoint}: model STOI {np.mean(model_stoi):.3f}  vocoder-on-true-mel STOI {np.mean(ceiling):.3f}"
          f"  mel L1 {np.mean(distance):.3f}  ({len(rows)} LibriSpeech dev files)")


if __name__ == "__main__":
    main()
