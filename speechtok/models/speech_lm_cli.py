"""``speechtok tts`` and ``speechtok asr``: the AR+DiT model (with its tokenizer) from the shell."""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

#: The bundled AR+DiT model that ``tts`` and ``asr`` use without ``--model``.
DEFAULT_MODEL = "ardit-default"


def model_source(args: argparse.Namespace) -> str:
    """``--model``, or the bundled default (a one-line error when neither exists)."""
    from ..bundled import bundled_names
    from ..errors import CheckpointError

    if args.model:
        return args.model
    if DEFAULT_MODEL not in bundled_names("ardit"):
        raise CheckpointError(f"no AR+DiT model is bundled ({DEFAULT_MODEL}); pass --model CHECKPOINT")
    return DEFAULT_MODEL


def add_speech_lm_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tts", help="text → speech with an AR+DiT model",
                              description="Synthesise speech with an AR+DiT checkpoint (speechtok train --preset ardit-…)"
                                          " and the tokenizer it was trained on.")
    p.add_argument("text", help="what to say")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav/.flac)")
    p.add_argument("--model", help=f"AR+DiT checkpoint directory or bundled name (default: {DEFAULT_MODEL})")
    p.add_argument("--tokenizer", help="tokenizer checkpoint (default: the one recorded in the model; its weights"
                                       " must match)")
    p.add_argument("--vocoder", help="SiTok models: 'griffin-lim' or a vocoder checkpoint instead of the tokenizer's own")
    p.add_argument("--prompt", help="reference audio whose voice is continued")
    p.add_argument("--prompt-text", help="transcript of --prompt (default: the model transcribes it)")
    p.add_argument("--voice", help="reference audio whose voice the speech takes (not continued, no transcript"
                                   " needed): through the speaker condition of a model with one and --voice-match")
    p.add_argument("--no-default-voice", action="store_true",
                   help="given no --voice or --prompt, speak as the model does without its default voice")
    p.add_argument("--voice-match", type=float, default=1.0,
                   help="how far the speech's mean latent over time moves to the --voice clip's (else the --prompt"
                        " clip's): 0 leaves it as generated, 1 matches it (default: 1; latent models)")
    p.add_argument("--steps", type=int, help="Euler steps of the DiT head (default: the model's)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--eos-threshold", type=float,
                   help="end-of-speech probability that stops the speech, in (0, 1) (default: the model's)")
    p.add_argument("--temperature", type=float, default=1.0, help="code sampling temperature (SiTok models)")
    p.add_argument("--max-seconds", type=float, help="stop here if no end of speech was predicted")
    p.add_argument("--seed", type=int, default=0, help="noise / sampling seed (default: 0)")
    p.set_defaults(func=_tts)

    p = subparsers.add_parser("asr", help="speech → text with an AR+DiT model",
                              description="Transcribe audio files with an AR+DiT checkpoint; prints one line per file.")
    p.add_argument("inputs", nargs="+", help="audio files")
    p.add_argument("--model", help=f"AR+DiT checkpoint directory or bundled name (default: {DEFAULT_MODEL})")
    p.add_argument("--tokenizer", help="tokenizer checkpoint (default: the one recorded in the model)")
    p.add_argument("--beam", type=int, help="CTC models: prefix beam width, 1 for greedy (default: the model's)")
    p.add_argument("--text-lm", help="CTC models: character n-gram (speechtok text-lm) the beam search reads with,"
                                     " a directory or bundled name, or 'none' (default: the model's)")
    p.add_argument("--lm-weight", type=float, help="CTC models: weight of the text LM's log-probability")
    p.add_argument("--unit-bonus", type=float, help="CTC models: score added per letter (longer outputs)")
    p.set_defaults(func=_asr)

    p = subparsers.add_parser("text-lm", help="fit a character n-gram for CTC beam search on sentences",
                              description="Count the character n-grams of text files (one sentence per line, an"
                                          " 'id<TAB>text' TSV or a manifest's transcripts) into a checkpoint that"
                                          " `speechtok asr --text-lm` and the asr_text_lm setting read.")
    p.add_argument("texts", nargs="+", help="text files")
    p.add_argument("-o", "--output", required=True, help="output checkpoint directory (must not exist)")
    p.add_argument("--order", type=int, help="symbols per n-gram, context + 1 (default: 8)")
    p.add_argument("--min-count", type=int,
                   help="leave out n-grams of 3+ symbols seen fewer times (default: 2; 1 keeps all)")
    p.add_argument("--exclude", nargs="*", default=[],
                   help="files of the same forms whose sentences (by id or by text) stay out, e.g. evaluation sets")
    p.set_defaults(func=_text_lm)


def _tts(args: argparse.Namespace) -> int:
    import torch

    from ..audio import AUDIO_FORMATS, load_audio, save_audio
    from ..fileio import check_output
    from .ardit_config import check_eos_threshold
    from .speech_lm import SpeechLM, check_voice_match

    check_output(args.output, inputs=[p for p in (args.prompt, args.voice) if p], suffixes=tuple(AUDIO_FORMATS),
                 what="audio output")
    if args.eos_threshold is not None:
        check_eos_threshold(args.eos_threshold, "--eos-threshold")
    check_voice_match(args.voice_match, "--voice-match")

    prompt = load_audio(args.prompt) if args.prompt else None  # bad audio fails before the model loads
    voice = load_audio(args.voice) if args.voice else None
    lm = SpeechLM.from_pretrained(model_source(args), tokenizer=args.tokenizer, vocoder=args.vocoder)
    wav = lm.tts(args.text, prompt=prompt, prompt_text=args.prompt_text, voice=voice, voice_match=args.voice_match,
                 default_voice=not args.no_default_voice, steps=args.steps, cfg=args.cfg,
                 eos_threshold=args.eos_threshold, temperature=args.temperature, max_seconds=args.max_seconds,
                 generator=torch.Generator().manual_seed(args.seed))
    save_audio(args.output, wav[0, 0], lm.sample_rate)
    print(f"{args.output}: {wav.shape[-1] / lm.sample_rate:.2f} s at {lm.sample_rate} Hz")
    return 0


def _asr(args: argparse.Namespace) -> int:
    from ..audio import load_audio
    from ..errors import DataError
    from .speech_lm import SpeechLM

    missing = [p for p in args.inputs if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{missing[0]}: audio file not found")
    source = model_source(args)
    decoding = {name: value for name, value in (("asr_beam_width", args.beam), ("asr_lm_weight", args.lm_weight),
                                                ("asr_unit_bonus", args.unit_bonus)) if value is not None}
    if args.text_lm is not None:
        decoding["asr_text_lm"] = None if args.text_lm == "none" else args.text_lm
    _check_decoding(source, decoding)
    lm = SpeechLM.from_pretrained(source, tokenizer=args.tokenizer)
    lm.model.set_decoding(**decoding)
    for path in args.inputs:
        wav, rate = load_audio(path)
        text = lm.asr(wav, rate)
        print(text if len(args.inputs) == 1 else f"{path}\t{text}")
    return 0


def _check_decoding(source: str, decoding: dict[str, object]) -> None:
    """Refuse decoding settings from the model's config.json and the text LM's, before any weights load."""
    import json

    from ..bundled import CONFIG_FILE, load_checkpoint_kind, resolve
    from ..config import from_dict
    from ..errors import DataError
    from ..text_lm import KIND
    from .ardit_config import ARDiTConfig

    text_lm = decoding.get("asr_text_lm")
    if text_lm and load_checkpoint_kind(resolve(text_lm)) != KIND:  # resolve: a one-line error when missing
        raise DataError(f"{text_lm}: not a character n-gram checkpoint (speechtok text-lm writes them)")
    if load_checkpoint_kind(source) == "ardit":  # other cases fail as the model loads, with their own message
        config = from_dict(ARDiTConfig, json.loads((resolve(source) / CONFIG_FILE).read_text()).get("config"),
                           f"{source}/config").with_decoding(**decoding)
        if text_lm:
            vocabulary = json.loads((resolve(text_lm) / CONFIG_FILE).read_text()).get("config", {}).get("vocabulary")
            if vocabulary != config.text_vocab:
                raise DataError(f"{text_lm}: a {vocabulary!r} language model cannot score {source}'s"
                                f" {config.text_vocab!r} text")


def _text_lm(args: argparse.Namespace) -> int:
    from ..data.texts import Exclusion, read_texts
    from ..errors import DataError
    from ..fileio import check_output_dir
    from ..text_lm import CharNgramConfig, CharNgramLM

    if os.path.exists(args.output):
        raise DataError(f"{args.output}: already exists; give a new directory")
    check_output_dir(args.output, what="language model")
    sizes = {k: v for k, v in (("order", args.order), ("min_count", args.min_count)) if v is not None}
    config = CharNgramConfig(**sizes)  # bad values fail before any reading
    exclusion = Exclusion.of([s for path in args.exclude for s in read_texts(path)])
    sentences = [s for path in args.texts for s in read_texts(path) if s.text]
    kept = [s.text for s in sentences if not exclusion.excludes(s.id, s.text)]
    if not kept:
        raise DataError(f"no sentences left to count ({len(sentences)} read, all excluded)")
    lm = CharNgramLM.fit(kept, config)
    output = Path(args.output)
    staging = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:  # written beside, then renamed: an interrupted run leaves no half checkpoint at the output
        lm.save(staging)
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{args.output}: {len(lm):,} n-grams of order ≤ {config.order} from {lm.config.sentences:,} sentences"
          f" ({len(sentences) - len(kept):,} excluded)")
    return 0
