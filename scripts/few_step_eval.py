"""Few-step decoding: how close each SiTok checkpoint gets at N Euler steps, and how fast it decodes.

    python scripts/few_step_eval.py --checkpoints sitok-default runs/shortcut/checkpoints/step_0000300 \
        --data dev.tsv --limit 12 --steps 1 2 4 8 16 [--max-seconds 8] [--threads 1]

Per checkpoint and step count, over the first ``--limit`` files of the manifest: the L1 distance in
normalised log-mel to the checkpoint's own decode at ``--reference-steps`` (the error a few-step
decode adds to its ODE solution), to the first checkpoint's decode at ``--reference-steps``, and to
the clip's own mel, and the decoding speed (tokens → mel → Vocos waveform) in seconds of audio per
second. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import time

import torch

from speechtok.audio import load_audio
from speechtok.data.manifest import read_corpus
from speechtok.models.sitok import SiTok
from speechtok.waveform import prepare_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", default=["sitok-default"])
    parser.add_argument("--data", required=True, help="manifest of held-out clips")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--reference-steps", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=8.0, help="clips are cut to this length")
    parser.add_argument("--vocoder", default="vocos-24k", help="vocoder of the timed decode")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: SiTok.from_pretrained(name).eval() for name in args.checkpoints}
    reference_model = models[args.checkpoints[0]]
    totals: dict[tuple[str, int], list[float]] = {}  # → [L1 to own and first reference, to the clip, seconds]
    audio_seconds = 0.0
    for utt in read_corpus(args.data)[: args.limit]:
        wav, rate = load_audio(utt.path)
        wav = torch.from_numpy(wav[: int(args.max_seconds * rate)])[None, None]
        codes = reference_model.encode(wav, rate)
        true_mel = reference_model.mel(prepare_batch(wav, rate, reference_model.sample_rate)[0])
        frames = true_mel.shape[-1]
        audio_seconds += wav.shape[-1] / rate
        references = {name: model.decode_mel(codes, steps=args.reference_steps)[..., :frames]
                      for name, model in models.items()}
        for name, model in models.items():
            for steps in args.steps:
                start = time.perf_counter()
                mel = model.decode_mel(codes, steps=steps)
                model.vocode(mel, args.vocoder)
                elapsed = time.perf_counter() - start
                mel = mel[..., :frames]
                row = totals.setdefault((name, steps), [0.0, 0.0, 0.0, 0.0])
                row[0] += float((mel - references[name]).abs().mean())
                row[1] += float((mel - references[args.checkpoints[0]]).abs().mean())
                row[2] += float((mel - true_mel).abs().mean())
                row[3] += elapsed
    files = min(args.limit, len(read_corpus(args.data)))
    print(f"{files} files, {audio_seconds:.1f} s of audio; reference: {args.checkpoints[0]} at {args.reference_steps} steps;"
          f" {args.threads} torch thread(s)\n")
    r = args.reference_steps
    print(f"| checkpoint | steps | mel L1 to own {r}-step decode | to {args.checkpoints[0]} at {r} steps | to the clip |"
          " decode × real time |")
    print("|---|---|---|---|---|---|")
    for (name, steps), (to_own, to_first, to_clip, seconds) in totals.items():
        print(f"| {name} | {steps} | {to_own / files:.3f} | {to_first / files:.3f} | {to_clip / files:.3f} |"
              f" {audio_seconds / seconds:.1f} |")


if __name__ == "__main__":
    main()
