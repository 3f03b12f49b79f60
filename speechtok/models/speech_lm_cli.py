"""``speechtok tts`` and ``speechtok asr``: the AR+DiT model (with its tokenizer) from the shell."""
from __future__ import annotations

import argparse

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
    p.set_defaults(func=_asr)


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
    from .speech_lm import SpeechLM

    lm = SpeechLM.from_pretrained(model_source(args), tokenizer=args.tokenizer)
    for path in args.inputs:
        wav, rate = load_audio(path)
        text = lm.asr(wav, rate)
        print(text if len(args.inputs) == 1 else f"{path}\t{text}")
    return 0
