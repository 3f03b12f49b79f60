"""The HoliTok ablation table: three-stage training vs a vanilla VAE, one command.

    python scripts/holitok_table.py [--pipeline small|mel] [--runs runs] [--data data/splits/dev.tsv] [--probe-steps 500]

``small`` needs the runs of ``bash scripts/train_holitok_ablation.sh`` (holitok-s1/-s2/-s3/-vanilla);
``mel`` those of ``bash scripts/train_holitok_default.sh`` (holitok-mel-s1/-s2/-s3, holitok-mel-vanilla-a
then holitok-mel-vanilla) and writes its own block (holitok-mel-table). Evaluates
the latest checkpoint of stage II, stage III and the vanilla VAE with the evaluation harness (WER,
STOI, PESQ NB/WB, speaker similarity) beside the identity floor, measures each representation's
latent learnability (a next-frame probe trained for a fixed budget), plots the training curves of
both pipelines on one step axis, and rewrites the ``holitok-table`` block of docs/holitok.md.
Stage I is no system of its own: its bottleneck is bypassed in training, so it is only plotted.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from speechtok.audio import load_audio  # noqa: E402
from speechtok.data.manifest import read_manifest  # noqa: E402
from speechtok.eval import evaluate  # noqa: E402
from speechtok.eval.learnability import probe  # noqa: E402
from speechtok.eval.summary import legend, markdown_table, replace_marked_block  # noqa: E402
from speechtok.eval.systems import HoliTokSystem  # noqa: E402
from speechtok.models.holitok import HoliTok  # noqa: E402
from speechtok.train.plots import read_metrics  # noqa: E402
from speechtok.train.state import find_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[str, ...]  # runs of the three-stage pipeline, in order
    vanilla: tuple[str, ...]  # runs of the vanilla VAE, in order (the last is evaluated)
    systems: dict[str, str]  # evaluated run → description
    marker: str
    image: str
    script: str
    train_loss: str


PIPELINES = {
    "small": Pipeline(("holitok-s1", "holitok-s2", "holitok-s3"), ("holitok-vanilla",),
                      {"holitok-s2": "stage II (VAE bottleneck, β 0.1)", "holitok-s3": "stage III (all, β 7 + semantics)",
                       "holitok-vanilla": "vanilla VAE (all from scratch, β 0.1)"},
                      "holitok-table", "holitok-ablation.png", "bash scripts/train_holitok_ablation.sh",
                      "train multi-scale mel L1 (5-point mean)"),
    "mel": Pipeline(("holitok-mel-s1", "holitok-mel-s2", "holitok-mel-s3"), ("holitok-mel-vanilla-a", "holitok-mel-vanilla"),
                    {"holitok-mel-s2": "stage II (VAE bottleneck, β 0.1)",
                     "holitok-mel-s3": "stage III (all, β 1 + CTC + speaker)",
                     "holitok-mel-vanilla": "vanilla VAE (all from scratch, β 0.1)"},
                    "holitok-mel-table", "holitok-mel-ablation.png", "bash scripts/train_holitok_default.sh",
                    "train normalised-mel L1 (5-point mean)"),
}


def encode_all(model: HoliTok, rows: list) -> list[torch.Tensor]:
    out = []
    for row in tqdm(rows, desc="encode", unit="file", leave=False):
        wav, rate = load_audio(row.path)
        out.append(model.encode(torch.from_numpy(wav)[None, None], rate)[0].T.float())
    return out


def plot_curves(runs: Path, pipeline: Pipeline, png: Path) -> None:
    """Mel L1 (train, smoothed, and validation) and KL of both pipelines against total steps."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, names, color in (("three stages", pipeline.stages, "tab:blue"), ("vanilla VAE", pipeline.vanilla, "tab:orange")):
        offset = 0
        for i, name in enumerate(names):
            records = read_metrics(runs / name / "metrics.jsonl")
            train = [(r["step"] + offset, r["mel"]) for r in records if "mel" in r]
            valid = [(r["step"] + offset, r["valid_mel"]) for r in records if "valid_mel" in r]
            kl = [(r["step"] + offset, r["kl"]) for r in records if "kl" in r]
            style = {"color": color, "label": label if i == 0 else None}
            if len(train) >= 5:
                x, y = zip(*train)
                smooth = np.convolve(y, np.ones(5) / 5, mode="valid")
                axes[0].plot(x[len(x) - len(smooth):], smooth, **style)
            if valid:
                axes[1].plot(*zip(*valid), marker="o", **style)
            if kl:
                axes[2].plot(*zip(*kl), **style)
            offset += max((r["step"] for r in records), default=0)
            if names is pipeline.stages and i < len(names) - 1:
                for ax in axes:
                    ax.axvline(offset, color="grey", lw=0.5, ls=":")
    for ax, title in zip(axes, (pipeline.train_loss, "validation mel L1 (whole dev files)", "KL per latent element")):
        ax.set_title(title)
        ax.set_xlabel("total training steps")
        ax.legend()
    axes[2].set_yscale("log")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="small")
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("--probe-data", default=str(ROOT / "data" / "splits" / "train.tsv"))
    parser.add_argument("--probe-steps", type=int, default=500)
    parser.add_argument("-o", "--output", default=str(ROOT / "runs" / "eval" / "dev"))
    args = parser.parse_args()
    runs, pipeline = Path(args.runs), PIPELINES[args.pipeline]
    checkpoints = {name: find_checkpoint(runs / name) for name in pipeline.systems}
    systems = ["identity", *(HoliTokSystem(str(path)) for path in checkpoints.values())]
    result = evaluate(systems, args.data, args.output, metrics="wer,stoi,pesq,sim")

    probe_rows = [r for r in read_manifest(args.probe_data) if r.seconds >= 3.0][:300]
    valid_rows = read_manifest(args.data)
    learnability = []
    for name, path in checkpoints.items():
        model = HoliTok.from_pretrained(path)
        scores = probe(encode_all(model, probe_rows), encode_all(model, valid_rows), steps=args.probe_steps)
        learnability.append(f"| {pipeline.systems[name]} | `{path.relative_to(runs.parent) if path.is_relative_to(runs.parent) else path}`"
                            f" | {scores.valid_mse:.3f} | {scores.copy_last_mse:.3f} | {scores.initial_valid_mse:.3f} |")
    plot_curves(runs, pipeline, ROOT / "docs" / "images" / pipeline.image)

    meta = result.meta
    names = {HoliTokSystem(str(p)).name: pipeline.systems[n] for n, p in checkpoints.items()}
    lines = [
        f"Produced by `python scripts/holitok_table.py --pipeline {args.pipeline}` on {meta['date']} from the runs of"
        f" `{pipeline.script}`: `{Path(args.data).name}`, {meta['files']} files,"
        f" {meta['minutes']:.1f} min, {meta['speakers']} speakers ({meta['transcribed']} transcribed)."
        f" Evaluation wall time {meta['seconds_total'] / 60:.1f} min.",
        "",
        "Systems: " + "; ".join(f"`{k}` = {v}" for k, v in names.items()) + ".",
        "",
        markdown_table(result.rows, result.columns),
        "",
        "Mean ± 95 % CI half-width over files. " + legend(result.columns) + ".",
        "",
        f"Latent learnability: the next-frame probe (2-layer causal transformer, {args.probe_steps} steps) on"
        f" normalised posterior-mean latents of {len(probe_rows)} training utterances ≥ 3 s, validation MSE on the"
        " dev split (lower = easier for a downstream model):",
        "",
        "| representation | checkpoint | probe MSE | copy-last-frame MSE | untrained probe MSE |",
        "|---|---|---|---|---|",
        *learnability,
        "",
        f"![training curves of both pipelines](images/{pipeline.image})",
    ]
    replace_marked_block(ROOT / "docs" / "holitok.md", pipeline.marker, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
