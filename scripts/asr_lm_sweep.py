"""Choose the AR+DiT model's CTC decoding defaults (beam width, text-LM weight, bonus per letter), and
among several checkpoints the one to bundle, away from the speech the ASR figures are reported on.

    python scripts/asr_lm_sweep.py [--model ardit-default [RUN/checkpoints/step_N …] [A+B …]] [--text-lm charlm-ljspeech]
                                   [--data data/splits/dev.tsv] [--width 16] [--lm-weight 0.5 0.8 1 1.3 1.6]
                                   [--unit-bonus 0 1 2 3] [--marker M]

Tunes on the ``--data`` files without a transcript from LibriSpeech (dev.tsv: 20 held-out training-set
speakers, one file each), labelled by Moonshine, the data engine's gate ASR, never by the evaluation
judge; the transcribed files (LibriSpeech dev speaker 84, LJ Speech), on which ``scripts/ardit_table.py``
reports ASR, play no part in the choice. A model written ``A+B+…`` is the average of those checkpoints' weights
(what ``bundle_checkpoint.py A --average-with B …`` exports). Prints WER (pooled over words) against the labels for greedy
reading and every (model, weight, bonus); with ``--marker M`` it also rewrites that block of docs/ardit.md (an
exploratory sweep leaves the documented tables alone). Bundle the
choice with ``scripts/bundle_checkpoint.py CHECKPOINT ardit-default --asr-beam-width W --asr-text-lm LM
--asr-lm-weight A --asr-unit-bonus B``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from tqdm import tqdm

from speechtok.audio import load_audio
from speechtok.checkpoint import average_checkpoints, load_checkpoint, load_state
from speechtok.data.manifest import read_manifest
from speechtok.data.moonshine import Moonshine
from speechtok.errors import SpeechtokError
from speechtok.eval.judges.asr import pooled_wer
from speechtok.eval.summary import check_marked_block, publish_block
from speechtok.models.speech_lm import SpeechLM

ROOT = Path(__file__).resolve().parents[1]


def averaged_model(source: str) -> SpeechLM:
    """The model ``source`` names; ``A+B+…``: A with the weights averaged over all of them."""
    first, *others = source.split("+")
    lm = SpeechLM.from_pretrained(first)
    if others:
        load_state(lm.model, average_checkpoints([load_checkpoint(s, expected_kind="ardit") for s in (first, *others)]))
    return lm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["ardit-default"],
                        help="AR+DiT checkpoints with an ASR encoder (bundled names or folders; A+B: their average)")
    parser.add_argument("--text-lm", default="charlm-ljspeech", help="character n-gram (speechtok text-lm)")
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--width", type=int, default=16, help="beam width")
    parser.add_argument("--lm-weight", type=float, nargs="+", default=[0.5, 0.8, 1.0, 1.3, 1.6])
    parser.add_argument("--unit-bonus", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--marker", help="block of docs/ardit.md to rewrite (default: print the table only)")
    args = parser.parse_args()
    try:  # every refusal before the model and Moonshine load
        if args.marker:
            check_marked_block(ROOT / "docs" / "ardit.md", args.marker)
        rows = [r for r in read_manifest(args.data) if not r.transcript and "librispeech" in r.path.parent.name]
        if not rows:
            raise SpeechtokError(f"{args.data}: no untranscribed LibriSpeech files to tune on")
        models = [averaged_model(source) for source in args.model]
        for lm in models:
            lm.model.set_decoding(asr_beam_width=args.width, asr_text_lm=args.text_lm)  # checks the combination
    except SpeechtokError as error:
        parser.exit(2, f"error: {error}\n")
    labeller = Moonshine()
    audio = [load_audio(row.path) for row in rows]
    labels = [labeller.transcribe(wav, rate) for wav, rate in tqdm(audio, desc="Moonshine labels", unit="file")]
    results: dict[tuple[str, float | None, float | None], float] = {}
    for source, lm in zip(args.model, models):
        log_probs = [lm.model.asr_log_probs(lm.features(wav, rate))
                     for wav, rate in tqdm(audio, desc=f"{source}: ASR encoder", unit="file")]
        lm.model.set_decoding(asr_text_lm=None, asr_beam_width=1)
        results[source, None, None] = pooled_wer([(t, lm.model.read_ctc(p)) for t, p in zip(labels, log_probs)])
        for weight, bonus in itertools.product(args.lm_weight, args.unit_bonus):
            lm.model.set_decoding(asr_beam_width=args.width, asr_text_lm=args.text_lm, asr_lm_weight=weight,
                                  asr_unit_bonus=bonus)
            results[source, weight, bonus] = pooled_wer([(t, lm.model.read_ctc(p)) for t, p in zip(labels, log_probs)])
        print(f"{source}: greedy {results[source, None, None]:.1f} %, with the LM"
              f" {min(v for (m, w, _), v in results.items() if m == source and w is not None):.1f} %", flush=True)
    lines = ["| decoding | LM weight | bonus per letter | " + " | ".join(f"`{m}`" for m in args.model) + " |",
             "|---|---|---|" + "---|" * len(args.model)]
    for weight, bonus in [(None, None), *itertools.product(args.lm_weight, args.unit_bonus)]:
        setting = "greedy | – | –" if weight is None else f"beam {args.width} | {weight:g} | {bonus:g}"
        lines.append(f"| {setting} | " + " | ".join(f"{results[m, weight, bonus]:.1f}" for m in args.model) + " |")
    results = {k: v for k, v in results.items() if k[1] is not None}
    best = min(results, key=results.get)
    command = " ".join(["python scripts/asr_lm_sweep.py", "--model", *args.model, f"--text-lm {args.text_lm}",
                        *([] if args.data == str(ROOT / "data" / "splits" / "dev.tsv") else [f"--data {args.data}"]),
                        f"--width {args.width}", "--lm-weight", *(f"{w:g}" for w in args.lm_weight),
                        "--unit-bonus", *(f"{b:g}" for b in args.unit_bonus),
                        *([f"--marker {args.marker}"] if args.marker else [])])
    block = "\n".join([f"Produced by `{command}`: {len(rows)} untranscribed LibriSpeech files of"
                       f" `{Path(args.data).name}` ({len(rows)} speakers held out of training), labelled by"
                       " Moonshine base (the gate ASR, not the evaluation judge); WER % (pooled over words)"
                       f" against the labels. Lowest: {best[0]}, weight"
                       f" {best[1]:g}, bonus {best[2]:g}.", "", *lines])
    publish_block(ROOT / "docs" / "ardit.md", args.marker, block)
    print(f"lowest: {best[0]} --asr-lm-weight {best[1]:g} --asr-unit-bonus {best[2]:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
