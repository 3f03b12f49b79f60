"""CPU speed of HoliTok's decoder: the reference (training) path vs the folded inference decoder.

    python benchmarks/holitok_decode.py [--preset holitok-base] [--seconds 10] [--threads 1 2]
                                        [--variants reference fp32 bf16] [--repeats 2]

Random weights (they do not change the arithmetic), random latents. Each figure is the last of
--repeats calls (the first also grows the heap); ``×RT`` = audio seconds / wall seconds, ``CPU s`` =
the process's CPU seconds per audio second. Runs as the ``speechtok`` command does, keeping freed
memory (speechtok/allocator.py). docs/performance.md quotes its output.
"""
from __future__ import annotations

import argparse
import time

import torch

from speechtok.allocator import retain_freed_memory
from speechtok.models.holitok import HoliTok

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="holitok-base")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16"], choices=["reference", *DTYPES])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    retain_freed_memory()
    torch.manual_seed(0)
    model = HoliTok.from_preset(args.preset).eval()
    latents = torch.randn(1, model.latent_dim, round(args.seconds * model.latent_rate))
    print(f"{args.preset}, {args.seconds:g} s of latents; last of {args.repeats} calls")
    print("| decoder | threads | x RT | CPU s per audio s |\n|---|---|---|---|")
    with torch.inference_mode():
        hidden = model.bottleneck.expand(latents)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for variant in args.variants:
                decode = (model.decoder if variant == "reference"
                          else model.inference_decoder(DTYPES[variant]))
                for _ in range(args.repeats):
                    wall, cpu = time.perf_counter(), time.process_time()
                    decode(hidden)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(f"| {variant} | {threads} | {args.seconds / wall:.3g} | {cpu / args.seconds:.3g} |", flush=True)


if __name__ == "__main__":
    main()
