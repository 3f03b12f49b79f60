"""Export a checkpoint as a small (fp16) inference checkpoint bundled inside the package.

    python scripts/bundle_checkpoint.py runs/vocos-small/checkpoints/step_0002500 vocos-24k
    python scripts/bundle_checkpoint.py runs/sitok-small/checkpoints/step_0003000 sitok-default --vocoder vocos-24k
    python scripts/bundle_checkpoint.py speechtok/checkpoints/sitok-small sitok-default --vocoder vocos-24k
    python scripts/bundle_checkpoint.py runs/sitok-guidance/checkpoints/step_0000400 sitok-default \
        --vocoder vocos-24k --sample-steps 2 --cfg-scale 2
    python scripts/bundle_checkpoint.py runs/holitok-mel-s3/checkpoints/step_0001500 holitok-default
    python scripts/bundle_checkpoint.py runs/ardit-default/checkpoints/step_0001500 ardit-default

Writes speechtok/checkpoints/<name>/ (or --out-dir/<name>/; config.json + fp16 model.safetensors, hash-pinned). From a
training checkpoint it records the summary that `speechtok info <name>` prints (preset, steps,
data, recipe, final metrics, and the same for the checkpoint the run was initialised from); from an
inference checkpoint it keeps that checkpoint's summary.
``--vocoder`` pairs a SiTok checkpoint with a bundled vocoder (loaded by ``from_pretrained``); a
HoliTok mel head names its vocoder in its config (``vocoder``, bundled vocos-24k by default).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from speechtok.assets import ASSETS
from speechtok.bundled import BUNDLED_DIR
from speechtok.checkpoint import average_checkpoints, load_checkpoint, load_state
from speechtok.config import from_dict
from speechtok.errors import SpeechtokError
from speechtok.models.ardit import ARDiT
from speechtok.models.holitok import HoliTok
from speechtok.models.sitok import SiTok
from speechtok.train.summary import training_summary
from speechtok.vocoder.vocos import Vocos

MODELS = {"sitok": SiTok, "vocos": Vocos, "holitok": HoliTok, "ardit": ARDiT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="training checkpoint (runs/.../checkpoints/step_N) or inference checkpoint")
    parser.add_argument("name", help="bundled name, e.g. sitok-default or vocos-24k")
    parser.add_argument("--vocoder", help="bundled vocoder that a SiTok checkpoint decodes with")
    parser.add_argument("--sample-steps", type=int, help="SiTok, AR+DiT: the Euler steps decoding uses by default")
    parser.add_argument("--cfg-scale", type=float, help="SiTok, AR+DiT: the CFG scale decoding uses by default")
    parser.add_argument("--sample-temperature", type=float, help="SiTok: the decoder's starting-noise scale by default")
    parser.add_argument("--eos-threshold", type=float, help="AR+DiT: the end-of-speech probability that stops TTS")
    parser.add_argument("--voice", help="AR+DiT: a clip of speechtok/assets whose voice TTS takes when given none")
    parser.add_argument("--asr-decoding", choices=("attention", "ctc"),
                        help="AR+DiT: how ASR reads (ctc needs an ASR encoder)")
    parser.add_argument("--asr-beam-width", type=int, help="AR+DiT, CTC: prefix beam width (1: greedy)")
    parser.add_argument("--asr-text-lm", help="AR+DiT, CTC: the bundled text LM beam search reads with")
    parser.add_argument("--asr-lm-weight", type=float, help="AR+DiT, CTC: the text LM's weight")
    parser.add_argument("--asr-unit-bonus", type=float, help="AR+DiT, CTC: score added per letter")
    parser.add_argument("--average-with", nargs="+", default=[], metavar="CHECKPOINT",
                        help="average the weights with these checkpoints (of the same architecture, e.g. the"
                             " run's neighbouring steps or the bundle it was fine-tuned from)")
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_DIR,
                        help="folder that receives <name>/ (default: the package's bundled checkpoints; e.g."
                             " checkpoints/ for an export kept in the repository but not shipped)")
    args = parser.parse_args()
    source = Path(args.checkpoint)
    try:
        loaded = load_checkpoint(source, expected_kind=None)
        others = [load_checkpoint(other, expected_kind=None) for other in args.average_with]
    except SpeechtokError as error:
        parser.error(str(error))
    info = dict(loaded.info)
    if (source / "trainer.json").is_file():
        info = {"training": training_summary(source, loaded.kind)}
    info.pop("quality", None)  # measured again for the new bundle (scripts/eval_table.py)
    if args.vocoder:
        if loaded.kind != "sitok":
            parser.error("--vocoder applies to SiTok checkpoints")
        info["vocoder"] = args.vocoder
    decoding = {k: v for k, v in (("sample_steps", args.sample_steps), ("cfg_scale", args.cfg_scale),
                                  ("sample_temperature", args.sample_temperature),
                                  ("eos_threshold", args.eos_threshold), ("default_voice", args.voice),
                                  ("asr_decoding", args.asr_decoding), ("asr_beam_width", args.asr_beam_width),
                                  ("asr_text_lm", args.asr_text_lm), ("asr_lm_weight", args.asr_lm_weight),
                                  ("asr_unit_bonus", args.asr_unit_bonus)) if v is not None}
    if args.voice and not (ASSETS / args.voice).is_file():
        parser.error(f"--voice {args.voice}: not a clip of {ASSETS}")
    config_class = MODELS[loaded.kind].config_class
    unknown = [k for k in decoding if k not in getattr(config_class, "INFERENCE_FIELDS", ())]
    if unknown:
        flag = "voice" if unknown[0] == "default_voice" else unknown[0]
        parser.error(f"--{flag.replace('_', '-')} does not apply to {loaded.kind} checkpoints")
    try:  # the new defaults checked on the config, and the checkpoints' shapes, before the weights load
        from_dict(config_class, loaded.config).with_decoding(**decoding)
        averaged = average_checkpoints([loaded, *others]) if others else None
    except SpeechtokError as error:
        parser.error(str(error))
    model = MODELS[loaded.kind].from_pretrained(source)
    if averaged is not None:
        load_state(model, averaged)
        info["averaged_with"] = [str(other.directory) for other in others]
    if decoding:  # inference defaults only: the weights and the codes stay as trained
        if loaded.kind == "ardit":
            model.set_decoding(**decoding)  # loads the text LM it names, so a wrong name fails here
        else:
            model.config = model.config.with_decoding(**decoding)
    target = args.out_dir / args.name
    staging = args.out_dir / f".{args.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, dtype=torch.float16, info=info)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"bundled {source} as {target} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
