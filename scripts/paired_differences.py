"""Paired differences between systems of one evaluation report, file by file (far tighter than
comparing two rows' intervals when the systems share their tokens).

    python scripts/paired_differences.py runs/eval/dev --base sitok-default+vocos-24k
    python scripts/paired_differences.py REPORT --base NAME --source librispeech --metrics wer,stoi,sim
    python scripts/paired_differences.py REPORT --base NAME --exclude 84-121123-0020   # without one file

Reads ``REPORT/results.jsonl`` (written by ``speechtok eval -o REPORT``) and prints every other
system minus ``--base`` as a Markdown table (:func:`speechtok.eval.summary.paired_differences`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechtok.eval.summary import markdown_table, paired_differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="a speechtok eval report folder")
    parser.add_argument("--base", required=True, help="system name as in the report's table")
    parser.add_argument("--source", help="only files whose path contains this (e.g. librispeech)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="leave out files whose path contains this (repeatable), e.g. to see how much one file decides")
    parser.add_argument("--metrics", default="wer,cer,stoi,sim")
    args = parser.parse_args()
    results = args.report / "results.jsonl"
    if not results.is_file():
        print(f"error: {results}: no such file (run speechtok eval -o {args.report} first)", file=sys.stderr)
        return 2
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    if args.source:
        records = [r for r in records if args.source in r["path"]]
    records = [r for r in records if not any(part in r["path"] for part in args.exclude)]
    systems = sorted({r["system"] for r in records})
    if args.base not in systems:
        print(f"error: --base {args.base!r} is not in {results} (systems: {', '.join(systems)})", file=sys.stderr)
        return 2
    metrics = tuple(args.metrics.split(","))
    rows = paired_differences(records, args.base, [s for s in systems if s != args.base], metrics)
    columns = ["system", "files", *(c for m in metrics for c in (m, f"{m}_ci95"))]
    print(markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
