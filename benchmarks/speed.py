"""CPU (or GPU) speed of a SiTok checkpoint: real-time factors of encode, decode_mel and the vocoders.

    python benchmarks/speed.py [--checkpoint sitok-default] [--seconds 10] [--threads 2] [--steps 16 4]

RTF = processing time / audio duration (lower is faster; < 1 is faster than real time). Each figure
is the median of --repeats runs after one warm-up run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechtok.audio import load_audio
from speechtok.assets import SAMPLE_SPEECH
from speechtok.models.sitok import SiTok


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="sitok-default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = SiTok.from_pretrained(args.checkpoint, map_location=args.device)
    wav, rate = load_audio(SAMPLE_SPEECH, model.sample_rate)
    repeats = int(args.seconds * rate / len(wav)) + 1
    x = torch.from_numpy(wav).repeat(repeats)[: int(args.seconds * rate)][None, None]
    codes = model.encode(x, rate)
    print(f"{args.checkpoint} on {args.device} ({args.threads} threads), {args.seconds:g} s of speech, {codes.shape[-1]} tokens")
    print("| stage | seconds | RTF |\n|---|---|---|")
    t = timed(lambda: model.encode(x, rate), args.repeats)
    print(f"| encode | {t:.3f} | {t / args.seconds:.4f} |")
    for steps in args.steps:
        t = timed(lambda: model.decode_mel(codes, steps=steps), args.repeats)
        print(f"| decode_mel, {steps} steps | {t:.3f} | {t / args.seconds:.4f} |")
        t = timed(lambda: model.decode_mel(codes, steps=steps, cfg=2.0), args.repeats)
        print(f"| decode_mel, {steps} steps, CFG | {t:.3f} | {t / args.seconds:.4f} |")
    mel = model.decode_mel(codes, steps=args.steps[-1])
    t = timed(lambda: model.vocode(mel, "griffin-lim"), args.repeats)
    print(f"| Griffin-Lim (32 iterations) | {t:.3f} | {t / args.seconds:.4f} |")
    if model.vocoder is not None:
        t = timed(lambda: model.vocode(mel), args.repeats)
        print(f"| neural vocoder ({model.vocoder.config.name}) | {t:.3f} | {t / args.seconds:.4f} |")


if __name__ == "__main__":
    main()
