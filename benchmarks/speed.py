"""CPU (or GPU) speed of a SiTok checkpoint: real-time factors of encode, decode_mel and the vocoders,
and the throughput of batched encode/decode.

    python benchmarks/speed.py [--checkpoint sitok-default] [--seconds 10] [--threads 2] [--steps 16 4]
                               [--batch 1 4 8]

RTF = processing time / audio duration (lower is faster; < 1 is faster than real time); ×RT is its
inverse, over the whole batch's audio. Each figure is the median of --repeats runs after one warm-up
run. "CPU s" is the process's CPU time (all threads): on a shared machine wall time includes waiting
for a core, CPU time much less so.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechtok.audio import load_audio
from speechtok.assets import SAMPLE_SPEECH
from speechtok.models.sitok import SiTok


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` runs after a warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="sitok-default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="*", default=[16, 4])
    parser.add_argument("--batch", type=int, nargs="*", default=[],
                        help="batch sizes for encode/decode throughput at the checkpoint's steps and CFG")
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
    print("| stage | seconds | CPU s | RTF |\n|---|---|---|---|")

    def row(name: str, fn) -> None:
        wall, cpu = timed(fn, args.repeats)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall / args.seconds:.4f} |", flush=True)

    row("encode", lambda: model.encode(x, rate))
    for steps in args.steps:
        row(f"decode_mel, {steps} steps", lambda: model.decode_mel(codes, steps=steps, cfg=1.0))
        row(f"decode_mel, {steps} steps, CFG 2", lambda: model.decode_mel(codes, steps=steps, cfg=2.0))
    if args.steps:
        mel = model.decode_mel(codes, steps=args.steps[-1])
        row("Griffin-Lim (32 iterations)", lambda: model.vocode(mel, "griffin-lim"))
        if model.vocoder is not None:
            row(f"neural vocoder ({model.vocoder.config.name})", lambda: model.vocode(mel))
    if args.batch:
        c = model.config
        print(f"\nthroughput, {args.seconds:g} s per item; decode = {c.sample_steps} steps, CFG {c.cfg_scale:g}"
              f", {'the checkpoint vocoder' if model.vocoder is not None else 'Griffin-Lim'}")
        print("| batch | encode s | encode CPU s | encode ×RT | decode s | decode CPU s | decode ×RT |\n|---|---|---|---|---|---|---|")
        vocoder = None if model.vocoder is not None else "griffin-lim"
        for b in args.batch:
            xs, cs = x.expand(b, -1, -1).contiguous(), codes.expand(b, -1, -1).contiguous()
            enc, enc_cpu = timed(lambda: model.encode(xs, rate), args.repeats)
            dec, dec_cpu = timed(lambda: model.decode(cs, vocoder=vocoder), args.repeats)
            audio = b * args.seconds
            print(f"| {b} | {enc:.3f} | {enc_cpu:.3f} | {audio / enc:.0f} | {dec:.3f} | {dec_cpu:.3f} | {audio / dec:.1f} |", flush=True)


if __name__ == "__main__":
    main()
