"""Prompted decoding: speaker similarity of SiTok reconstructions (or AR+DiT speech) with and without a voice prompt.

    python scripts/prompt_sim.py --data ../shared/data/librispeech_dev_clean_spk84 --limit 10 \
        [--checkpoint sitok-default] [--other ../shared/data/ljspeech_32utt] [--prompt-seconds 4]
    python scripts/prompt_sim.py --data ../shared/data/librispeech_dev_clean_spk84 --tts ardit-default \
        --other ../shared/data/ljspeech_32utt [--voice] [--voice-match 1] [--cfg 2] [--wer]

With ``--tts MODEL`` each clip is not reconstructed but its transcript (the folder's manifest.tsv) is
spoken by that AR+DiT model, continuing the prompt (the whole prompt clip, given with its transcript);
with ``--voice`` as well, the prompt clip is a voice only (``speechtok tts --voice``: the speaker condition
of a model with one, and the mean latent, ``--voice-match``). ``--wer`` adds the Whisper judge's WER of the
speech in each condition, so a voice is not bought with the words.

Each clip (sorted by name) is reconstructed (or spoken) without a prompt (an AR+DiT model with a default voice
then speaks with that voice), with the next clip of the folder as the
prompt (another utterance of the same speaker), and, with ``--other``, with a clip of another speaker
as the prompt. SIM is the Resemblyzer cosine between the original clip and the reconstruction (the
evaluation harness' judge). Prints mean ± standard error per condition and the
paired change against no prompt, and how much closer each prompted output came to the prompt clip itself
(its SIM to the prompt clip minus the unprompted output's): for an other-speaker prompt, whether the
voice moved to the prompt's speaker.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from speechtok.audio import load_audio, resample
from speechtok.data.manifest import read_manifest
from speechtok.errors import SpeechtokError
from speechtok.eval.judges.asr import load_asr_judge, pooled_wer
from speechtok.eval.judges.speaker import embedding_cosine, load_speaker_judge
from speechtok.models.sitok import SiTok
from speechtok.models.speech_lm import SpeechLM, check_voice_match


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of one speaker's clips")
    parser.add_argument("--other", help="folder of another speaker's clips (a mismatched-prompt control)")
    parser.add_argument("--checkpoint", default="sitok-default")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--prompt-seconds", type=float, default=4.0, help="prompts are cut to this length")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="clips are cut to this length")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", type=float, help="the CFG scale (default: the model's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tts", metavar="MODEL", help="an AR+DiT model that speaks each clip's transcript instead")
    parser.add_argument("--voice", action="store_true", help="with --tts: prompts are voices (speechtok tts --voice), not continued")
    parser.add_argument("--voice-match", type=float, default=1.0,
                        help="with --tts: how far the speech's mean latent moves to the prompt's (speechtok tts --voice-match)")
    parser.add_argument("--wer", action="store_true",
                        help="with --tts: also the Whisper judge's WER of the speech in each condition (transcripts)")
    args = parser.parse_args()
    if (args.voice or args.wer or args.voice_match != 1.0) and not args.tts:
        parser.error("--voice, --voice-match and --wer need --tts")
    try:
        check_voice_match(args.voice_match, "--voice-match")
    except SpeechtokError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    model = SpeechLM.from_pretrained(args.tts) if args.tts else SiTok.from_pretrained(args.checkpoint).eval()
    if args.voice:
        try:  # before the judge loads and any speech is made
            model.check_voice()
        except SpeechtokError as error:
            parser.exit(2, f"error: {error}\n")
    transcripts = {}
    for folder in filter(None, (args.data, args.other)) if args.tts else ():
        transcripts.update({r.path.name: r.transcript for r in read_manifest(Path(folder) / "manifest.tsv")})
    judge = load_speaker_judge()
    asr_judge = load_asr_judge() if args.wer else None
    clips = sorted(Path(args.data).glob("*.flac"))
    others = sorted(Path(args.other).glob("*.flac")) if args.other else []
    if args.tts:  # a prompt is given with its transcript: only transcribed clips can be prompts
        clips = [c for c in clips if transcripts.get(c.name)]
        others = [c for c in others if transcripts.get(c.name)]
    scores: dict[str, list[float]] = {"no prompt": [], "same-speaker prompt": []}
    if others:
        scores["other-speaker prompt"] = []
    heard: dict[str, list[tuple[str, str]]] = {condition: [] for condition in scores}  # (transcript, judge's)
    towards: dict[str, list[float]] = {condition: [] for condition in scores}  # SIM to the prompt clip vs no prompt
    for i, path in enumerate(clips[: args.limit]):
        wav, rate = load_audio(path)
        wav = wav[: int(args.max_seconds * rate)]
        reference = judge.embed(resample(wav, rate, judge.sample_rate))
        prompts = {"no prompt": None, "same-speaker prompt": clips[(i + 1) % len(clips)]}
        if others:
            prompts["other-speaker prompt"] = others[i % len(others)]
        for condition, prompt_path in prompts.items():
            kwargs = {}
            if prompt_path is not None:
                prompt, prompt_rate = load_audio(prompt_path)
                kwargs = {"prompt": torch.from_numpy(prompt[: int(args.prompt_seconds * prompt_rate)]),
                          "prompt_sample_rate": prompt_rate}
            if args.tts:
                tts_prompt = {} if prompt_path is None else {"voice": (prompt, prompt_rate)} if args.voice else {
                    "prompt": (prompt, prompt_rate), "prompt_text": transcripts[prompt_path.name]}  # whole: its text
                out = model.tts(transcripts[path.name], steps=args.steps, cfg=args.cfg, max_seconds=args.max_seconds,
                                voice_match=args.voice_match, generator=torch.Generator().manual_seed(i),
                                **tts_prompt)[0, 0].numpy()
                if asr_judge is not None:
                    said = asr_judge.transcribe(resample(out, model.sample_rate, asr_judge.sample_rate))
                    heard[condition].append((transcripts[path.name], said))
            else:
                out = model.reconstruct(torch.from_numpy(wav)[None, None], rate, steps=args.steps, cfg=args.cfg,
                                        **kwargs)[0, 0].numpy()
            embedding = judge.embed(resample(out, model.sample_rate, judge.sample_rate))
            scores[condition].append(embedding_cosine(reference, embedding))
            if prompt_path is None:
                unprompted = embedding
            else:
                heard_prompt = prompt if args.tts else prompt[: int(args.prompt_seconds * prompt_rate)]  # as the model
                voice = judge.embed(resample(heard_prompt, prompt_rate, judge.sample_rate))
                towards[condition].append(embedding_cosine(voice, embedding) - embedding_cosine(voice, unprompted))
        print(path.name, {k: round(v[-1], 3) for k, v in scores.items()}, flush=True)
    cfg = f", CFG {args.cfg:g}" if args.cfg is not None else ""
    match = f", voice match {args.voice_match:g}" if args.tts else ""
    prompts_are = ("whole, as voices (no transcript)" if args.voice else "whole (with their transcripts)" if args.tts
                   else f"{args.prompt_seconds:g} s")
    wer_head = (" SIM to the prompt clip: change vs no prompt (paired) | WER % (Whisper) |", "---|---|") if asr_judge \
        else (" SIM to the prompt clip: change vs no prompt (paired) |", "---|")
    print(f"\n{args.tts or args.checkpoint}{cfg}{match}, {len(scores['no prompt'])} clips of {Path(args.data).name},"
          f" prompts {prompts_are}\n\n| condition | SIM (mean ± s.e.) | change vs no prompt (paired, ± s.e.) |"
          f"{wer_head[0]}\n|---|---|---|{wer_head[1]}")
    baseline = np.array(scores["no prompt"])
    for condition, values in scores.items():
        change = np.array(values) - baseline
        more = f" {_mean_sem(towards[condition])} |" + (f" {pooled_wer(heard[condition]):.1f} |" if asr_judge else "")
        print(f"| {condition} | {np.mean(values):.3f} ± {_sem(values):.3f} | {change.mean():+.3f} ± {_sem(change):.3f} |{more}")


def _sem(values: list[float] | np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _mean_sem(values: list[float]) -> str:
    return f"{np.mean(values):+.3f} ± {_sem(values):.3f}" if values else "–"


if __name__ == "__main__":
    main()
