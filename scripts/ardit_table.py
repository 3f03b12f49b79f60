"""The AR+DiT comparison table (issue 6): unified vs single-task, HoliTok latents vs SiTok codes.

    python scripts/ardit_table.py [--runs runs] [--data data/splits/dev.tsv] [--tts-texts 20] [--marker ardit-table]
    python scripts/ardit_table.py --runs RUNS --run ardit-default --marker ardit-default-table --tts-texts 47

Needs the runs of ``bash scripts/train_ardit_comparison.sh`` (CPU) or ``bash scripts/train_gpu.sh`` (GPU),
or the ``--run`` folders named (a training run, or an exported model such as a lent GPU's unpacked arm,
``scripts/gpu_corpus_job.sh``). For every run (its latest checkpoint) that can speak, synthesises the first
``--tts-texts`` transcripts of the dev split (also giving the generated / real duration ratio) and
the held-out sentences of ``--tts-sentences`` (50 LJ Speech sentences no training voice speaks), and
measures their intelligibility with the evaluation's ASR judge (Whisper; WER pooled over words) and
its text gain on the dev split (``speechtok.train.ardit_recipe.text_gain``: > 0 once it reads the text); for
every run that can listen, transcribes every transcribed dev file (WER against the manifest), and its
LibriSpeech files alone. Writes the generated audio under ``runs/eval/ardit/`` and prints the table; with
``--marker M`` it also rewrites that block of docs/ardit.md (the comparison's own block: ``ardit-table``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from speechtok.audio import load_audio, resample, save_audio
from speechtok.data.manifest import read_manifest
from speechtok.data.texts import read_sentences
from speechtok.errors import SpeechtokError
from speechtok.eval.judges.asr import ASRJudge, load_asr_judge, pooled_wer
from speechtok.eval.summary import check_marked_block, publish_block
from speechtok.models.speech_lm import SpeechLM
from speechtok.train.ardit_recipe import ARDiTObjective, SpeechTextData, text_gain
from speechtok.train.plots import read_metrics
from speechtok.train.state import find_checkpoint, read_trainer_state

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("ardit-unified", "ardit-tts", "ardit-asr", "ardit-unified-sitok")


def speak_and_judge(lm: SpeechLM, judge: ASRJudge, texts: list[tuple[str, str]], folder: Path,
                    eos_threshold: float | None, desc: str) -> tuple[list[tuple[str, str]], float]:
    """Speak each (name, text) with seed = its position, save ``folder/name.wav``, transcribe it with
    the judge; returns the (text, transcription) pairs and the seconds generated."""
    pairs, seconds = [], 0.0
    for i, (name, text) in enumerate(tqdm(texts, desc=desc, unit="text")):
        wav = lm.tts(text, eos_threshold=eos_threshold, generator=torch.Generator().manual_seed(i))[0, 0].numpy()
        save_audio(folder / f"{name}.wav", wav, lm.sample_rate)
        pairs.append((text, judge.transcribe(resample(wav, lm.sample_rate, judge.sample_rate))))
        seconds += len(wav) / lm.sample_rate
    return pairs, seconds


def valid_asr_accuracy(metrics: list[dict], step: int | None) -> str:
    """Validation next-unit ASR accuracy at ``step`` (None: the last validation): comparable across
    runs of different lengths and representations, since the text targets are the same."""
    records = [r for r in metrics if "valid_asr_accuracy" in r]
    if step is not None:
        records = [r for r in records if r["step"] == step]
    return f"{records[-1]['valid_asr_accuracy']:.3f}" if records else "–"


def describe(run_dir: Path) -> tuple[Path, int | str, float, list[dict]]:
    """A run folder's latest training checkpoint, or an exported model (a bundle, or what a lent GPU's
    `gpu_corpus_job.sh unpack` rebuilt): the checkpoint, its step, its TTS share and its validation log
    (an export keeps only its last validation, in its training summary)."""
    if (run_dir / "config.json").is_file():
        training = json.loads((run_dir / "config.json").read_text())["info"].get("training", {})
        checkpoint, step = run_dir, training.get("steps", "–")
        objective = training.get("recipe", {}).get("objective", {})
        last = training.get("final_valid_metrics", {})
        metrics = [{"step": step, **last}] if last else []
    else:
        checkpoint = find_checkpoint(run_dir)
        state = read_trainer_state(checkpoint)
        step, objective = state["step"], state["spec"].get("objective", {})
        metrics = read_metrics(run_dir / "metrics.jsonl")
    return checkpoint, step, float(objective.get("tts_ratio", ARDiTObjective.tts_ratio)), metrics


def plot_curves(runs_dir: Path, out_png: Path) -> None:
    """Validation curves of every run: ASR next-unit accuracy (comparable across representations)
    and the TTS loss (flow-matching MSE for latents, code cross-entropy for SiTok codes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("valid_asr_accuracy", "validation ASR next-unit accuracy", None),
              ("valid_tts", "validation TTS flow loss (HoliTok latents)", "latents"),
              ("valid_tts", "validation TTS code cross-entropy (SiTok codes)", "tokens"))
    for ax, (key, title, audio) in zip(axes, panels):
        for run in RUNS:
            path = runs_dir / run / "metrics.jsonl"
            if not path.is_file() or (audio is not None and (audio == "tokens") != run.endswith("sitok")):
                continue
            points = [(r["step"], r[key]) for r in read_metrics(path) if key in r]
            if points:
                ax.plot(*zip(*points), marker="o", label=run)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--tts-texts", type=int, default=20)
    parser.add_argument("--tts-sentences", default=str(ROOT / "data" / "splits" / "tts_heldout.tsv"),
                        help="held-out sentences ('id<TAB>text' TSV) also synthesised and judged; '' for none")
    parser.add_argument("--run", action="append", default=[], help="run folder name(s) under --runs (default: the"
                        " comparison's runs)")
    parser.add_argument("--eos-threshold", type=float, help="TTS end-of-speech threshold instead of the checkpoint's"
                        " (e.g. the one bundled with it after scripts/ardit_decoding_sweep.py)")
    parser.add_argument("--marker", help="block of docs/ardit.md to rewrite (default: print the table only)")
    parser.add_argument("-o", "--output", default=str(ROOT / "runs" / "eval" / "ardit"))
    parser.add_argument("--tokenizer", action="append", default=[], metavar="RUN=CHECKPOINT",
                        help="load RUN with this copy of its tokenizer (same weights hash) instead of the recorded"
                             " path, e.g. when the bundled checkpoint's decoding defaults changed after training")
    args = parser.parse_args()
    try:
        if args.marker:
            check_marked_block(ROOT / "docs" / "ardit.md", args.marker)
    except SpeechtokError as error:
        parser.exit(2, f"error: {error}\n")
    tokenizers = dict(item.split("=", 1) for item in args.tokenizer)
    rows = [r for r in read_manifest(args.data) if r.transcript]
    judge = load_asr_judge("whisper-base")
    out_dir = Path(args.output)
    heldout = read_sentences(args.tts_sentences) if args.tts_sentences else []
    table = ["| run | representation | trained tasks (TTS share) | steps | TTS WER % (Whisper on generated speech)"
             f" | TTS WER % ({len(heldout)} held-out sentences) | generated / real duration | ASR WER % (dev)"
             " | ASR WER % (dev LibriSpeech) | valid ASR accuracy at step 1000 / last | text gain (dev) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in args.run or RUNS:
        if not (Path(args.runs) / run).is_dir():
            continue
        checkpoint, step, ratio, metrics = describe(Path(args.runs) / run)
        lm = SpeechLM.from_pretrained(checkpoint, tokenizer=tokenizers.get(run))
        tts = tts_heldout = asr = asr_libri = duration = gain = "–"
        if ratio > 0:
            data = SpeechTextData(rows, lm.tokenizer, lm.model, lm.model.vocabulary, ARDiTObjective(), 0, progress=False)
            gain = f"{text_gain(lm.model, [data.get(i, 0) for i in range(len(data))]):.4f}"
            dev = rows[: args.tts_texts]
            pairs, generated = speak_and_judge(lm, judge, [(r.path.stem, r.transcript) for r in dev], out_dir / run,
                                               args.eos_threshold, f"{run} tts")
            tts, duration = f"{pooled_wer(pairs):.1f}", f"{generated / sum(r.seconds for r in dev):.2f}"
            held, _ = speak_and_judge(lm, judge, [(s.id, s.text) for s in heldout], out_dir / run / "heldout",
                                      args.eos_threshold, f"{run} tts held-out")
            if held:
                tts_heldout = f"{pooled_wer(held):.1f}"
                (out_dir / run / "heldout" / "tts.json").write_text(json.dumps(held, indent=1))
        if ratio < 1:
            pairs = []
            for row in tqdm(rows, desc=f"{run} asr", unit="file"):
                wav, rate = load_audio(row.path)
                pairs.append((row.transcript, lm.asr(wav, rate)))
            asr = f"{pooled_wer(pairs):.1f}"
            libri = [pair for row, pair in zip(rows, pairs) if "librispeech" in row.path.parent.name]
            asr_libri = f"{pooled_wer(libri):.1f}" if libri else "–"
            (out_dir / run).mkdir(parents=True, exist_ok=True)
            (out_dir / run / "asr.json").write_text(json.dumps(pairs, indent=1))
        kind = "SiTok codes" if lm.model.config.audio == "tokens" else "HoliTok latents"
        tasks = "TTS" if ratio == 1 else "ASR" if ratio == 0 else f"TTS + ASR ({ratio:.2f})"
        table.append(f"| `{run}` | {kind} | {tasks} | {step} | {tts} | {tts_heldout} |"
                     f" {duration} | {asr} | {asr_libri} |"
                     f" {valid_asr_accuracy(metrics, 1000)} / {valid_asr_accuracy(metrics, None)} | {gain} |")
    command = " ".join(["python scripts/ardit_table.py", f"--runs {Path(args.runs).name}",
                        *(f"--run {r}" for r in args.run),
                        *([f"--marker {args.marker}"] if args.marker else []),
                        *([f"--eos-threshold {args.eos_threshold:g}"] if args.eos_threshold is not None else []),
                        f"--tts-texts {args.tts_texts}"])
    lines = [f"Produced by `{command}`:"
             f" TTS on the first {args.tts_texts} transcripts of `{Path(args.data).name}` and on {len(heldout)} held-out"
             f" sentences (`{Path(args.tts_sentences).name if heldout else '–'}`), ASR on its {len(rows)}"
             f" transcribed files; judge {judge.info.name} (`{judge.info.version}`).", "", *table]
    if not args.run:  # the curves go with the table: into the docs with a marker, beside the audio without
        docs_images = ROOT / "docs" / "images"
        plot = (docs_images if args.marker else out_dir) / "ardit-comparison.png"
        plot_curves(Path(args.runs), plot)
        lines += ["", f"![validation curves]({plot.relative_to(docs_images.parent) if args.marker else plot})"]
    publish_block(ROOT / "docs" / "ardit.md", args.marker, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
