"""Choose the AR+DiT model's TTS decoding defaults (DiT guidance scale, Euler steps, end-of-speech threshold,
default voice) on dev.

    python scripts/ardit_decoding_sweep.py [--model ardit-default] [--data data/splits/dev.tsv] [--texts 20]
                                           [--cfg 1 2 3] [--steps 8 16] [--eos 0.5 0.3] [--voices none A.flac …]
                                           [--marker M]

Synthesises the first ``--texts`` transcripts of the dev split for every (CFG, steps, threshold, voice) and
scores the speech with Moonshine, the data engine's gate ASR, never with the evaluation judge
(Whisper): the held-out TTS figures of ``scripts/ardit_table.py`` stay a fair test of the setting
chosen here. Reports WER (pooled over words) and the generated / real duration ratio, beside the same
ASR on the real recordings and on their reconstruction by the model's tokenizer (what TTS through
that tokenizer can reach at best); with ``--marker M`` it also rewrites that block of docs/ardit.md. Bundle
the choice with
``scripts/bundle_checkpoint.py RUN/checkpoints/step_N ardit-default --cfg-scale C --sample-steps S --eos-threshold E
--voice CLIP``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from speechtok.audio import load_audio
from speechtok.data.manifest import read_manifest
from speechtok.data.moonshine import Moonshine
from speechtok.errors import ConfigError, SpeechtokError
from speechtok.eval.judges.asr import pooled_wer
from speechtok.eval.summary import check_marked_block, publish_block
from speechtok.models.ardit_config import check_eos_threshold
from speechtok.models.speech_lm import SpeechLM

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ardit-default", help="AR+DiT checkpoint (bundled name or folder)")
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--steps", type=int, nargs="+",
                        help="the DiT's Euler steps (default: the model's; a model on SiTok codes has none: give one)")
    parser.add_argument("--eos", type=float, nargs="+", default=[0.5, 0.3],
                        help="end-of-speech thresholds (a model with a text aligner ignores them: give one)")
    parser.add_argument("--voices", nargs="+", default=["default"],
                        help="voice clips (speechtok tts --voice); 'default': the model's default voice, if it has"
                             " one; 'none': no voice at all")
    parser.add_argument("--marker", help="block of docs/ardit.md to rewrite (default: print the table only)")
    args = parser.parse_args()
    try:  # every refusal before the model and the judge load
        if args.marker:
            check_marked_block(ROOT / "docs" / "ardit.md", args.marker)
        for eos in args.eos:
            check_eos_threshold(eos, "--eos")
        if args.steps and min(args.steps) < 1:
            raise ConfigError(f"--steps must be >= 1, got {min(args.steps)}")
        voices = {name: None if name in ("none", "default") else load_audio(name)  # unreadable: refused
                  for name in args.voices}
    except SpeechtokError as error:
        parser.exit(2, f"error: {error}\n")
    rows = [r for r in read_manifest(args.data) if r.transcript][: args.texts]
    lm = SpeechLM.from_pretrained(args.model)
    if any(voices.values()):
        try:
            lm.check_voice()
        except SpeechtokError as error:
            parser.exit(2, f"error: {error}\n")
    steps_grid = args.steps or [lm.model.config.sample_steps]
    asr = Moonshine()
    lines = ["| CFG | Euler steps | end-of-speech threshold | voice | WER % (Moonshine) | generated / real duration |",
             "|---|---|---|---|---|---|"]
    real, reconstructed = [], []
    for row in tqdm(rows, desc="real speech", unit="clip"):
        wav, rate = load_audio(row.path)
        real.append((row.transcript, asr.transcribe(wav, rate)))
        resynthesis = lm.synthesize(lm.features(wav, rate), torch.Generator().manual_seed(0))[0, 0].numpy()
        reconstructed.append((row.transcript, asr.transcribe(resynthesis, lm.sample_rate)))
    lines += [f"| real speech | – | – | – | {pooled_wer(real):.1f} | 1.00 |",
              f"| real speech through the tokenizer | – | – | – | {pooled_wer(reconstructed):.1f} | 1.00 |"]
    print(*lines[-2:], sep="\n", flush=True)
    for cfg, steps, eos, voice in itertools.product(args.cfg, steps_grid, args.eos, voices):
        pairs, generated = [], 0.0
        for i, row in enumerate(tqdm(rows, desc=f"cfg {cfg:g} steps {steps} eos {eos:g} voice {Path(voice).name}",
                                     unit="text")):
            wav = lm.tts(row.transcript, cfg=cfg, steps=steps, eos_threshold=eos, voice=voices[voice],
                         default_voice=voice != "none",
                         generator=torch.Generator().manual_seed(i))[0, 0].numpy()
            pairs.append((row.transcript, asr.transcribe(wav, lm.sample_rate)))
            generated += len(wav) / lm.sample_rate
        lines.append(f"| {cfg:g} | {steps} | {eos:g} | {Path(voice).name} | {pooled_wer(pairs):.1f} |"
                     f" {generated / sum(r.seconds for r in rows):.2f} |")
        print(lines[-1], flush=True)
    default_data = args.data == str(ROOT / "data" / "splits" / "dev.tsv")
    command = " ".join(["python scripts/ardit_decoding_sweep.py", f"--model {args.model}",
                        *([] if default_data else [f"--data {args.data}"]), f"--texts {args.texts}",
                        "--cfg", *(f"{c:g}" for c in args.cfg),
                        *(["--steps", *map(str, args.steps)] if args.steps else []),
                        "--eos", *(f"{e:g}" for e in args.eos),
                        *(["--voices", *args.voices] if args.voices != ["default"] else []),
                        *([f"--marker {args.marker}"] if args.marker else [])])
    block = "\n".join([f"Produced by `{command}`:"
                       f" the first {len(rows)} transcripts of `{Path(args.data).name}`, one seed each, scored by"
                       " Moonshine base (the gate ASR, not the evaluation judge).", "", *lines])
    publish_block(ROOT / "docs" / "ardit.md", args.marker, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
