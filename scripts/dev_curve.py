"""The dev-split curve of a SiTok training run: what its checkpoints keep of the words, against the
checkpoint it started from and Codec2 700C, by training time (the measure issue 13's stopping rule is
written in: "the last ~6 CPU-hours gained < 1 WER point").

    python scripts/dev_curve.py RUN [--base CHECKPOINT] [--every 1000] [-o runs/eval/curve-RUN]
        [--data data/splits/dev.tsv] [--source librispeech_train_clean] [--workers 2] [--png CURVE.png]

Every kept checkpoint ``RUN/checkpoints/step_N`` (thinned to one per ``--every`` steps) is judged with
``speechtok eval`` at the bundle's decoding (4 steps, CFG 1, temperature 0, vocos-24k), as is ``--base``
unless it names its own (by default the run's ``--init`` checkpoint: its step 0), beside Codec2 700C. The table
gives, per checkpoint, the hours of speech seen, the wall time of the training steps and CPU-hours
(wall × threads × processes, from ``RUN/metrics.jsonl`` and ``RUN/spec.json``; validation and
checkpointing not counted; ``threads: 0`` counts every core), dWER and STOI on all files and on the ``--source``
files, and the paired difference from the base (file by file), which the PNG plots by CPU-hours.
Reruns reuse the report folder's cache.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from speechtok.bundled import BUNDLED_DIR, load_checkpoint_kind
from speechtok.data.manifest import read_corpus
from speechtok.errors import SpeechtokError
from speechtok.eval.summary import format_value, markdown_table, metric_summary, paired_differences
from speechtok.train.plots import read_metrics
from speechtok.train.state import find_checkpoint, read_trainer_state

DECODING = "@steps=4@cfg=1@temperature=0@vocoder=vocos-24k"
GOAL = "codec2-700c"


def training_clock(run: Path, processes: int) -> dict[int, tuple[float, float, float]]:
    """step → (hours of speech seen, training wall hours, CPU-hours) at every logged training window."""
    spec = json.loads((run / "spec.json").read_text())
    threads = spec["train"].get("threads") or os.cpu_count() or 1  # 0: torch's default, every core
    seen = wall = 0.0
    previous = 0
    clock = {0: (0.0, 0.0, 0.0)}
    for record in read_metrics(run / "metrics.jsonl"):
        if "sec_per_step" not in record:  # validation rows
            continue
        steps = record["step"] - previous
        previous = record["step"]
        wall += record["sec_per_step"] * steps
        seen += record["audio_sec_per_sec"] * record["sec_per_step"] * steps  # already summed over processes
        clock[record["step"]] = (seen / 3600, wall / 3600, wall * threads * processes / 3600)
    return clock


def at_step(clock: dict[int, tuple[float, float, float]], step: int) -> tuple[float, float, float]:
    """The clock at the last logged window at or before ``step``."""
    return clock[max(s for s in clock if s <= step)]


def checkpoints(run: Path, every: int) -> list[tuple[int, Path]]:
    """The kept checkpoints whose step is a multiple of ``every``, and the last one."""
    found = sorted((int(p.name.split("_")[1]), p) for p in (run / "checkpoints").glob("step_*") if p.is_dir())
    if not found:
        return []
    kept = [(step, path) for step, path in found if step % every == 0]
    if kept[-1:] != found[-1:]:
        kept.append(found[-1])  # the run's last checkpoint always counts
    return kept


def init_checkpoint(state: dict[str, Any]) -> str | None:
    """The checkpoint a run was started from with ``--init`` (a bundled one by its name), from its trainer state."""
    source = state.get("init", {}).get("checkpoint")
    if source and Path(source).resolve().parent == BUNDLED_DIR:
        return Path(source).name
    return source


def level(records: list[dict], system: str, metric: str) -> tuple[float | None, float | None]:
    """One system's value and CI half-width of ``metric`` over the files it scored."""
    return metric_summary([r for r in records if r["system"] == system and "error" not in r], metric)


def plot(matplotlib: Any, points: list[dict], goal: dict, source: str, png: Path) -> None:
    """dWER minus the base's, paired file by file (far tighter than the levels' intervals), by CPU-hours."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, key, title in ((axes[0], "all", "all files"), (axes[1], "source", f"{source} files")):
        # the run starts from the base; a checkpoint with no scored file has no point
        shown = [(0.0, (0.0, 0.0)), *((p["cpu_h"], p[key]) for p in points if p[key][0] is not None)]
        ax.errorbar([x for x, _ in shown], [v for _, (v, _) in shown], yerr=[ci or 0 for _, (_, ci) in shown],
                    marker="o", capsize=3, label="run − base")
        ax.axhline(0.0, color="grey", linestyle="--", label="base (step 0)")
        if goal[key] is not None:
            ax.axhline(goal[key], color="tab:red", linestyle=":", label=f"{GOAL} − base")
        ax.set_title(f"dWER − base, percentage points, {title}")
        ax.set_xlabel("training CPU-hours")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a speechtok train output folder")
    parser.add_argument("--base", help="the checkpoint to compare with (default: the run's --init checkpoint, its step 0)")
    parser.add_argument("--every", type=int, default=1000,
                        help="judge the kept checkpoints whose step is a multiple of this, and the last")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "data/splits/dev.tsv")
    parser.add_argument("--source", default="librispeech_train_clean",
                        help="also tabulate the files whose path contains this (the unseen LibriSpeech speakers)")
    parser.add_argument("-o", "--output", type=Path, help="report folder (default: runs/eval/curve-RUN)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--png", type=Path, help="plot here (default: REPORT/curve.png)")
    args = parser.parse_args()
    for needed in ("spec.json", "metrics.jsonl"):
        if not (args.run / needed).is_file():
            print(f"error: {args.run / needed}: no such file (not a speechtok train folder)", file=sys.stderr)
            return 2
    if not args.data.is_file():
        print(f"error: {args.data}: no such manifest", file=sys.stderr)
        return 2
    if args.every < 1:
        print(f"error: --every {args.every}: must be a positive number of steps", file=sys.stderr)
        return 2
    points = checkpoints(args.run, args.every)
    if not points:
        print(f"error: {args.run / 'checkpoints'}: no step_N checkpoints", file=sys.stderr)
        return 2
    broken = [path for _, path in points if load_checkpoint_kind(path) != "sitok"]
    if broken:
        print(f"error: {broken[0]}: not a SiTok checkpoint (no config.json of kind sitok)", file=sys.stderr)
        return 2
    try:
        state = read_trainer_state(find_checkpoint(args.run))  # the latest: the run's --init and process count
    except SpeechtokError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.base = args.base or init_checkpoint(state)
    if args.base is None:
        print(f"error: {args.run}: the run records no --init checkpoint; name one with --base", file=sys.stderr)
        return 2
    if load_checkpoint_kind(args.base.split("@")[0]) != "sitok":
        print(f"error: --base {args.base}: neither a bundled SiTok checkpoint nor a SiTok checkpoint folder",
              file=sys.stderr)
        return 2
    if not any(args.source in str(u.path) for u in read_corpus(args.data)):
        print(f"error: --source {args.source}: no file of {args.data} has it in its path", file=sys.stderr)
        return 2
    from speechtok.extras import MissingExtraError, optional_import

    try:
        matplotlib = optional_import("matplotlib", "plot", "the curve's plot")
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from speechtok.eval import evaluate
    from speechtok.eval.systems import get_systems

    base_spec = args.base if "@" in args.base else args.base + DECODING  # the run's decoding unless told
    try:  # resolved up front: a bad base or a missing codec is one line, before any judging
        systems = get_systems([base_spec, GOAL, *(f"{path}{DECODING}" for _, path in points)])
    except SpeechtokError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base_name, run_names = systems[0].name, [s.name for s in systems[2:]]
    clock = training_clock(args.run, state.get("world_size", 1))
    output = args.output or Path("runs/eval") / f"curve-{args.run.name}"
    result = evaluate(systems, args.data, output, metrics="wer,stoi", workers=args.workers)
    subset = [r for r in result.records if args.source in r["path"]]

    def measures(name: str) -> dict[str, tuple[float | None, float | None]]:
        return {"dwer": level(result.records, name, "dwer"), "stoi": level(result.records, name, "stoi"),
                "dwer_source": level(subset, name, "dwer")}

    goal_name = systems[1].name
    base, goal = measures(base_name), measures(goal_name)
    paired_all = paired_differences(result.records, base_name, [*run_names, goal_name], ("dwer", "stoi"))
    paired_source = paired_differences(subset, base_name, [*run_names, goal_name], ("dwer",))
    rows, curve = [], []
    for (step, _), name, pa, ps in zip(points, run_names, paired_all, paired_source):
        seen, wall, cpu = at_step(clock, step)
        point = measures(name)
        curve.append({"cpu_h": cpu, "all": (pa["dwer"], pa["dwer_ci95"]), "source": (ps["dwer"], ps["dwer_ci95"])})
        rows.append({
            "step": step, "speech h seen": f"{seen:.0f}", "wall h": f"{wall:.2f}", "CPU-h": f"{cpu:.2f}",
            "dWER % all": format_value(*point["dwer"], 1), f"dWER % {args.source}": format_value(*point["dwer_source"], 1),
            "STOI all": format_value(*point["stoi"], 3), "dWER − base, all": format_value(pa["dwer"], pa["dwer_ci95"], 1),
            f"dWER − base, {args.source}": format_value(ps["dwer"], ps["dwer_ci95"], 1),
            "STOI − base": format_value(pa["stoi"], pa["stoi_ci95"], 3),
        })
    columns = list(rows[0])
    goal_all, goal_source = paired_all[-1], paired_source[-1]
    rows.insert(0, {"step": f"base `{args.base}` (step 0)", "dWER % all": format_value(*base["dwer"], 1),
                    f"dWER % {args.source}": format_value(*base["dwer_source"], 1), "STOI all": format_value(*base["stoi"], 3)})
    rows.append({"step": GOAL, "dWER % all": format_value(*goal["dwer"], 1),
                 f"dWER % {args.source}": format_value(*goal["dwer_source"], 1), "STOI all": format_value(*goal["stoi"], 3),
                 "dWER − base, all": format_value(goal_all["dwer"], goal_all["dwer_ci95"], 1),
                 f"dWER − base, {args.source}": format_value(goal_source["dwer"], goal_source["dwer_ci95"], 1),
                 "STOI − base": format_value(goal_all["stoi"], goal_all["stoi_ci95"], 3)})
    failed = len(result.failures)
    print(f"`{shlex.join(['python', 'scripts/dev_curve.py', *sys.argv[1:]])}` on {result.meta['date']}:"
          f" {result.meta['files']} files of {args.data.name}, {len({r['file'] for r in subset})} of them"
          f" {args.source}; decoding {DECODING[1:]}" + (f"; {failed} (system, file) results failed" if failed else "")
          + ".\n")
    print(markdown_table(rows, columns))
    png = args.png or output / "curve.png"
    plot(matplotlib, curve, {"all": goal_all["dwer"], "source": goal_source["dwer"]}, args.source, png)
    print(f"\nplot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
