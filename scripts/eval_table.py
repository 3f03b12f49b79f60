"""Produce the documented evaluation tables on the development split, one command each.

    python scripts/eval_table.py baseline   # classical codecs → docs/evaluation.md
    python scripts/eval_table.py quality    # sitok-default vs Codec2/Opus and the first default → README.md,
                                            #   docs/vocoder.md and the bundled checkpoint's `speechtok info`
    python scripts/eval_table.py quality-librispeech   # the same on the dev split's LibriSpeech speakers
    python scripts/eval_table.py quality-train-clean   # ... and on its 20 train-clean-100 speakers alone (dWER)
    python scripts/eval_table.py quality-seen   # the same kind of files from 20 training speakers (probe.tsv):
                                                #   underfitting or failing to generalise → docs/training.md
    python scripts/eval_table.py few-step   # sitok-default at 16/8/4/2/1 steps, ± CFG → docs/sitok.md
    python scripts/eval_table.py holitok    # holitok-default beside Opus 6k, Codec2 and its vocoder → docs/holitok.md,
                                            #   README.md and the bundled checkpoint's `speechtok info`
    python scripts/eval_table.py holitok-librispeech   # the same on the dev split's LibriSpeech speakers (the goal)
    options: [--data MANIFEST (default: the table's split)] [-o runs/eval/dev] [--metrics ...] [--limit N] [--workers N]

Each runs ``speechtok eval`` (through :func:`speechtok.eval.evaluate`) and rewrites the block
between the table's ``<!-- NAME:begin -->`` / ``<!-- NAME:end -->`` markers in its documents with
the table, the data, the judges (versions and hashes) and the wall time. Reruns reuse the report
folder's cache, so only new or changed systems are computed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from speechtok.bundled import bundled_names
from speechtok.eval import evaluate
from speechtok.eval.codecs import CODECS
from speechtok.eval.summary import legend, markdown_table, paired_differences, replace_marked_block
from speechtok.eval.systems import SiTokSystem

ROOT = Path(__file__).resolve().parents[1]


HOLITOK_SYSTEMS = ("identity", "holitok-default", "vocoder:vocos-24k", "opus-6k", "codec2-1200", "codec2-700c")
# The bundle before session 19's GPU lease (session 18's decoder stage), kept as it was bundled and decoded the
# same way as today's default (4 steps, CFG 1, temperature 0).
PREVIOUS_DEFAULT = "sitok:checkpoints/sitok-default-s18"
PREVIOUS_DEFAULT_ROW = "sitok-default-s18+vocos-24k"
QUALITY_SYSTEMS = ("identity", "sitok:sitok-default", "sitok:sitok-default:griffin-lim", PREVIOUS_DEFAULT,
                   "sitok:checkpoints/sitok-default-v1", "vocoder:vocos-24k", "codec2-700c", "codec2-1200", "opus-6k")


@dataclass(frozen=True)
class Table:
    marker: str
    # "identity", codec names, "vocoder:<name>", "sitok:<checkpoint>[:<vocoder>]", or a SiTok checkpoint
    # with its own decoding settings ("sitok-default@steps=4@cfg=1", see speechtok.eval.systems)
    systems: tuple[str, ...]
    documents: tuple[str, ...]
    metrics: str | None = None  # None: speechtok eval's default set
    paired_base: str | None = None  # also tabulate every other SiTok row minus this one, file by file
    goal: str | None = None  # ... and the bundled default minus this system (the quality goal's baseline)
    info_checkpoint: str | None = None  # bundled checkpoint whose `speechtok info` shows the table
    source: str | None = None  # only the files whose source folder name contains this (e.g. "librispeech")
    split: str = "dev"  # the data/splits manifest it is measured on unless --data names another


TABLES = {
    "baseline": Table("baseline-table",
                      ("identity", "codec2-450", "codec2-700c", "codec2-1200", "codec2-1600", "codec2-3200",
                       "opus-6k", "speex-q0", "amr-nb-4.75"),
                      ("docs/evaluation.md",)),
    "quality": Table("quality-table", QUALITY_SYSTEMS, ("README.md", "docs/vocoder.md"),
                     metrics="wer,stoi,pesq,sim,dnsmos", paired_base=PREVIOUS_DEFAULT_ROW, goal="codec2-700c",
                     info_checkpoint="sitok-default"),
    # the same systems on the dev split's LibriSpeech speakers only (read English, never trained on)
    "quality-librispeech": Table("quality-librispeech-table", QUALITY_SYSTEMS, ("README.md",),
                                 metrics="wer,stoi,pesq,sim,dnsmos", paired_base=PREVIOUS_DEFAULT_ROW, goal="codec2-700c",
                                 source="librispeech"),
    # ... and only its 20 train-clean-100 speakers (one untranscribed file each, so dWER is the word measure):
    # speaker 84 alone carries the transcripts, and a codec can be unusually good or bad on one voice
    "quality-train-clean": Table("quality-train-clean-table", QUALITY_SYSTEMS, ("README.md",),
                                 metrics="wer,stoi,pesq,sim,dnsmos", paired_base=PREVIOUS_DEFAULT_ROW, goal="codec2-700c",
                                 source="librispeech_train_clean"),
    # the train-clean-100 table's kind of file from 20 speakers the tokenizer trained on (the same utterances):
    # as many words lost here as there means underfitting, not a failure to generalise to new voices
    "quality-seen": Table("quality-seen-table", ("sitok:sitok-default", PREVIOUS_DEFAULT, "vocoder:vocos-24k", "codec2-700c"),
                          ("docs/training.md",), metrics="wer,stoi", paired_base="codec2-700c", split="probe"),
    "holitok": Table("holitok-default-table", HOLITOK_SYSTEMS, ("docs/holitok.md",),
                     metrics="wer,stoi,pesq,sim,dnsmos", info_checkpoint="holitok-default"),
    "holitok-librispeech": Table("holitok-librispeech-table", HOLITOK_SYSTEMS, ("docs/holitok.md", "README.md"),
                                 metrics="wer,stoi,pesq,sim,dnsmos", source="librispeech"),
    "few-step": Table("few-step-table",
                      ("codec2-700c", "sitok-default@steps=16", "sitok-default@steps=8", "sitok-default@steps=4",
                       "sitok:sitok-default", "sitok-default@steps=1", "sitok-default@cfg=3",
                       "sitok-default@steps=4@cfg=1", "sitok-default@steps=2@cfg=1"),
                      ("docs/sitok.md",), metrics="wer,stoi,sim", paired_base="sitok-default+vocos-24k@steps=16"),
}


def resolve_systems(names: tuple[str, ...]) -> tuple[list, list[str]]:
    systems, skipped = [], []
    for name in names:
        if name.startswith("sitok:"):
            _, checkpoint, *vocoder = name.split(":")
            systems.append(SiTokSystem(checkpoint, vocoder=vocoder[0] if vocoder else None))
        elif name == "identity" or name.startswith("vocoder:") or "@" in name or name in bundled_names() \
                or Path(name).is_dir() or not CODECS[name].missing():
            systems.append(name)
        else:
            skipped.append(name)
    return systems, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--data", help="manifest (default: the table's split, data/splits/dev.tsv for most)")
    parser.add_argument("-o", "--output", help="report folder (default: runs/eval/dev, shared by the tables so"
                        " that systems in both are computed once)")
    parser.add_argument("--metrics", help="as for speechtok eval (default: the table's)")
    parser.add_argument("--limit", type=int, help="only the first N files (a quick look; documents untouched)")
    parser.add_argument("--workers", type=int, help="scoring processes (default: speechtok eval's)")
    args = parser.parse_args()
    table = TABLES[args.table]
    systems, skipped = resolve_systems(table.systems)
    output = args.output or str(ROOT / "runs" / "eval" / "dev")
    options = {} if args.workers is None else {"workers": args.workers}
    manifest = Path(args.data or ROOT / "data" / "splits" / f"{table.split}.tsv").resolve()
    data = subset_manifest(manifest, table.source, Path(output)) if table.source else manifest
    result = evaluate(systems, str(data), output, metrics=args.metrics or table.metrics, limit=args.limit, **options)
    meta = result.meta
    shown_data = f"`{manifest.relative_to(ROOT) if manifest.is_relative_to(ROOT) else manifest}`"
    if table.source:
        shown_data += f" (only the files of its {table.source} sources)"
    lines = [
        f"Produced by `python scripts/eval_table.py {args.table}` on {meta['date']}: {shown_data}, {meta['files']} files,"
        f" {meta['minutes']:.1f} min, {meta['speakers']} speakers, {meta['transcribed']} with a manifest transcript"
        f" (WER/CER are over those; dWER over all files). Metrics: {', '.join(meta['groups'])}."
        f" Wall time {meta['seconds_total'] / 60:.1f} min ({meta['workers']} worker processes),"
        f" {meta['reused']} of {meta['results']} (system, file) results taken from the report's cache.",
        "",
        markdown_table(result.rows, result.columns),
        "",
        "Mean ± 95 % CI half-width over files (WER/CER/dWER pooled over words, bootstrap CI). "
        + legend(result.columns) + ".",
        "",
        "Judges:",
        *[f"- {g}: {j['name']}, `{j['version']}`, sha256 `{j['sha256']}`" for g, j in meta["judges"].items()],
        f"- libraries: `{' '.join(f'{k}=={v}' for k, v in meta['libraries'].items())}`",
    ]
    if table.paired_base:
        others = [row["system"] for row in result.rows
                  if row["system"] != table.paired_base and row.get("token_rate") is not None]
        # dWER too: it is the only word measure on the untranscribed files (most speakers of the split)
        metrics = ("wer", "dwer", "stoi", "sim")
        paired = paired_differences(result.records, table.paired_base, others, metrics)
        if table.goal:
            paired += paired_differences(result.records, table.goal, ["sitok-default+vocos-24k"], metrics)
        lines += ["", "Paired differences on the same files (WER, dWER: pooled, paired bootstrap; STOI, SIM: mean"
                  " per-file difference; ± 95 % CI half-width):", "",
                  markdown_table(paired, ["system", *(c for m in metrics for c in (m, f"{m}_ci95")), "files"])]
    if skipped:
        lines.append(f"\nNot run (codec programs missing): {', '.join(skipped)}.")
    if result.failures:
        failures = "; ".join(f"{f['system']}/{f['file']}: {f['error']}" for f in meta["failures"])
        lines.append(f"\nFailed files: {failures}")
    print(markdown_table(result.rows, result.columns))
    if args.limit:
        print(f"--limit given: documents left unchanged; report in {result.out_dir}/index.html")
        return 0
    for doc in table.documents:
        replace_marked_block(ROOT / doc, table.marker, "\n".join(lines))
        print(f"updated {doc}")
    if table.info_checkpoint:
        record_quality(table.info_checkpoint, "\n".join(lines[:3]))
    print(f"report in {result.out_dir}/index.html")
    return 0


def subset_manifest(manifest: Path, source: str, output: Path) -> Path:
    """The manifest's rows whose source folder name contains ``source``, written into the report folder,
    so that the subset table reuses the full table's cached results."""
    from speechtok.data.manifest import read_manifest, write_manifest

    rows = [r for r in read_manifest(manifest) if source in r.path.parent.name]
    if not rows:
        raise SystemExit(f"{manifest}: no file from a source named like {source!r}")
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{manifest.stem}-{source}.tsv"
    write_manifest(path, rows)
    return path


def record_quality(name: str, text: str) -> None:
    """Store the table in the bundled checkpoint's info (printed by `speechtok info`); the config
    and weights hashes are unchanged, so the checkpoint stays verifiable."""
    import json

    from speechtok.bundled import BUNDLED_DIR, CONFIG_FILE
    from speechtok.fileio import write_json_atomic

    path = BUNDLED_DIR / name / CONFIG_FILE
    meta = json.loads(path.read_text())
    meta.setdefault("info", {})["quality"] = text
    write_json_atomic(path, meta)
    print(f"recorded the table in {path}")


if __name__ == "__main__":
    sys.exit(main())
