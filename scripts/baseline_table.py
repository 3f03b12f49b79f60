"""Produce the baseline table of docs/evaluation.md: classical codecs on the development split.

    python scripts/baseline_table.py [--data data/splits/dev.tsv] [-o runs/eval/baseline-dev] [--metrics ...]

Runs ``speechtok eval`` (through :func:`speechtok.eval.evaluate`) on identity, Codec2 450/700C/1200/
1600/3200, Opus 6 kbps, Speex q0 and AMR-NB 4.75 (those whose programs are installed), then rewrites
the block between the ``baseline-table`` markers in docs/evaluation.md with the table, the data,
the judges (versions and hashes) and the wall time. Reruns reuse the report folder's cache.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from speechtok.eval import evaluate
from speechtok.eval.codecs import CODECS
from speechtok.eval.summary import legend, markdown_table

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("identity", "codec2-450", "codec2-700c", "codec2-1200", "codec2-1600", "codec2-3200",
             "opus-6k", "speex-q0", "amr-nb-4.75")
BEGIN, END = "<!-- baseline-table:begin -->", "<!-- baseline-table:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "data" / "splits" / "dev.tsv"))
    parser.add_argument("-o", "--output", default=str(ROOT / "runs" / "eval" / "baseline-dev"))
    parser.add_argument("--metrics", default=None, help="as for speechtok eval (default: its default set)")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "evaluation.md"))
    args = parser.parse_args()

    systems = [s for s in BASELINES if s == "identity" or not CODECS[s].missing()]
    skipped = sorted(set(BASELINES) - set(systems))
    result = evaluate(systems, args.data, args.output, metrics=args.metrics)
    meta = result.meta
    data = Path(args.data).resolve()
    shown_data = data.relative_to(ROOT) if data.is_relative_to(ROOT) else data
    lines = [
        BEGIN,
        f"Produced by `python scripts/baseline_table.py` on {meta['date']}: `{shown_data}`, {meta['files']} files,"
        f" {meta['minutes']:.1f} min, {meta['speakers']} speakers, {meta['transcribed']} with a manifest transcript"
        f" (WER/CER are over those; dWER over all files). Metrics: {', '.join(meta['groups'])}."
        f" Wall time {meta['seconds_total'] / 60:.1f} min on {meta['threads']} threads,"
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
    if skipped:
        lines.append(f"\nNot run (codec programs missing): {', '.join(skipped)}.")
    if result.failures:
        failures = "; ".join(f"{f['system']}/{f['file']}: {f['error']}" for f in meta["failures"])
        lines.append(f"\nFailed files: {failures}")
    lines.append(END)
    doc = Path(args.doc)
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"error: {doc}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 2
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    doc.write_text(pattern.sub(lambda _: "\n".join(lines), text), encoding="utf-8")
    print(markdown_table(result.rows, result.columns))
    print(f"updated {doc}; report in {result.out_dir}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
