"""Original vs reconstructed log-mel of one clip, as a PNG (for docs and quick visual checks).

    python scripts/plot_reconstruction.py --checkpoint sitok-default --audio speechtok/assets/librispeech_84-121123-0001.flac \
        -o docs/images/sitok-small-reconstruction.png [--steps 16 --cfg 1.0]
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from speechtok.audio import load_audio  # noqa: E402
from speechtok.fileio import atomic_path  # noqa: E402
from speechtok.models.sitok import SiTok  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="sitok-default")
    parser.add_argument("--audio", required=True)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--cfg", type=float, default=None)
    args = parser.parse_args()
    model = SiTok.from_pretrained(args.checkpoint)
    wav, rate = load_audio(args.audio, model.sample_rate)
    x = torch.from_numpy(wav)[None, None]
    original = model.mel(x)[0]
    codes = model.encode(x, rate)
    decoded = model.decode_mel(codes, steps=args.steps, cfg=args.cfg, generator=torch.Generator().manual_seed(0))[0]
    decoded = decoded[:, : original.shape[-1]]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, mel, title in ((axes[0], original, "original"),
                           (axes[1], decoded, f"{model.config.name}: {codes.shape[-1]} tokens, {model.bitrate:g} bps")):
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", vmin=float(original.min()), vmax=float(original.max()))
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    axes[1].set_xlabel("frame (50 Hz)")
    fig.tight_layout()
    with atomic_path(args.output) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"wrote {args.output}; L1 mel distance {float((decoded - original).abs().mean()):.3f}")


if __name__ == "__main__":
    main()
