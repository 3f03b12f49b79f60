"""Print a training run's curves as markdown tables (the tables of docs/training.md).

    python scripts/summarize_run.py runs/sitok-small [--windows 10-50 200-300 700-800 1200-1300 2150-2250]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from speechtok.train.plots import read_metrics

COLUMNS = (("flow", ".3f"), ("ctc", ".2f"), ("vq", ".4f"), ("perplexity", ".0f"), ("codebook_usage", ".3f"),
           ("sec_per_step", ".2f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--windows", nargs="+", default=["10-50", "200-300", "700-800", "1200-1300", "2150-2250"])
    args = parser.parse_args()
    records = read_metrics(Path(args.run_dir) / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    print("| steps (window mean) | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for window in args.windows:
        lo, hi = map(int, window.split("-"))
        rows = [r for r in train if lo <= r["step"] <= hi]
        if rows:
            cells = [format(sum(r[name] for r in rows) / len(rows), fmt) for name, fmt in COLUMNS]
            print(f"| {lo}–{hi} | " + " | ".join(cells) + " |")
    valid = [r for r in records if "valid_flow" in r]
    if valid:
        print("\n| validation at step | " + " | ".join(str(r["step"]) for r in valid) + " |")
        print("|---" * (len(valid) + 1) + "|")
        for key, fmt in (("valid_flow", ".3f"), ("valid_ctc", ".2f"), ("valid_ctc_cer", ".3f")):
            print(f"| {key} | " + " | ".join(format(r[key], fmt) for r in valid if key in r) + " |")


if __name__ == "__main__":
    main()
