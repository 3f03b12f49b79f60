"""Print a training run's curves as markdown tables (the tables of docs/training.md and docs/ardit.md).

    python scripts/summarize_run.py runs/sitok-small [--windows 10-50 200-300 700-800 1200-1300 2150-2250]

Training metrics are averaged over step windows; every validation is one column. A SiTok run shows its
flow, CTC and codebook figures (and, by default, the windows of the 2,250-step ``sitok-small`` run); any
other family shows what its recipe logs (its progress keys) over five windows spread over the run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechtok.train.families import family
from speechtok.train.plots import read_metrics

SITOK_COLUMNS = (("flow", ".3f"), ("ctc", ".2f"), ("vq", ".4f"), ("perplexity", ".0f"), ("codebook_usage", ".3f"),
                 ("sec_per_step", ".2f"))
SITOK_VALID = (("valid_flow", ".3f"), ("valid_ctc", ".2f"), ("valid_ctc_cer", ".3f"))
SITOK_WINDOWS = ["10-50", "200-300", "700-800", "1200-1300", "2150-2250"]


def spread_windows(last_step: int, count: int = 5, width: int = 100) -> list[str]:
    """``count`` windows of ``width`` steps ending at evenly spaced steps up to ``last_step``."""
    ends = sorted({max(1, round(last_step * (i + 1) / count)) for i in range(count)})
    return [f"{max(0, end - width + 1)}-{end}" for end in ends]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--windows", nargs="+", help="step ranges LO-HI to average the training metrics over")
    args = parser.parse_args()
    run = Path(args.run_dir)
    if not (run / "metrics.jsonl").is_file() or not (run / "spec.json").is_file():
        parser.exit(2, f"error: {run}: not a training run (no metrics.jsonl and spec.json)\n")
    kind = json.loads((run / "spec.json").read_text())["kind"]
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    if kind == "sitok":
        columns, valid_rows, windows = SITOK_COLUMNS, SITOK_VALID, args.windows or SITOK_WINDOWS
    else:
        logged = {key for r in train for key in r}
        columns = tuple((k, ".3f") for k in (*family(kind).recipe.progress_keys, "sec_per_step") if k in logged)
        valid_keys = dict.fromkeys(k for r in records for k in r if k.startswith("valid_"))
        valid_rows = tuple((k, ".4f") for k in valid_keys)
        windows = args.windows or spread_windows(max((r["step"] for r in train), default=1))
    print("| steps (window mean) | " + " | ".join(name for name, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for window in windows:
        lo, hi = map(int, window.split("-"))
        rows = [r for r in train if lo <= r["step"] <= hi]
        if rows:
            cells = [format(sum(r[name] for r in rows if name in r) / max(1, sum(name in r for r in rows)), fmt)
                     for name, fmt in columns]
            print(f"| {lo}–{hi} | " + " | ".join(cells) + " |")
    valid = [r for r in records if any(k.startswith("valid_") for k in r)]
    if valid:
        print("\n| validation at step | " + " | ".join(str(r["step"]) for r in valid) + " |")
        print("|---" * (len(valid) + 1) + "|")
        for key, fmt in valid_rows:
            print(f"| {key} | " + " | ".join(format(r[key], fmt) if key in r else "–" for r in valid) + " |")


if __name__ == "__main__":
    main()
