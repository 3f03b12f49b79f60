"""Handlers of ``speechtok data synth``, ``report`` and ``pack`` (imported only when they run).

Arguments, the config and a resumed folder's saved settings are all checked before the engine and
its models are imported, so a typo costs a one-line error, not a model load.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import DataError
from ..fileio import check_output_dir, exclusive_lock
from .engine_config import load_config, prepare_output, saved_config


def run_synth(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    config = load_config(args.preset, args.config, args.hours or [], args.seed)
    check_output_dir(args.out, what="corpus folder")
    prepare_output(args.out, config)  # refuses a resume with other settings before any work
    from .engine import build, progress_bar

    with exclusive_lock(args.out, "speechtok data synth"):  # two builds would interleave one journal
        summary = build(config, args.out, workers=args.workers, progress=progress_bar)
    _print_summary(args.out, summary)
    return 0


def run_report(args: argparse.Namespace) -> int:
    config = saved_config(args.out)
    if config is None:
        raise DataError(f"{args.out}: not a corpus folder (no config.json); build one with 'speechtok data synth'")
    from .engine import write_outputs

    summary = write_outputs(args.out, config)
    _print_summary(args.out, summary)
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from .manifest import read_corpus
    from .pack import PackSettings, pack, prepare_pack_dir

    settings = PackSettings(kbps=args.kbps, max_mb=args.max_mb, max_rate=args.max_rate, seed=args.seed)
    settings.check()
    if args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    rows = read_corpus(args.source)
    out = check_output_dir(args.output, what="pack folder")
    with exclusive_lock(out, "speechtok data pack"):
        prepare_pack_dir(out, settings, rows)
        from tqdm import tqdm

        s = pack(rows, out, settings, progress=tqdm, workers=args.workers)
    print(f"wrote {out}/manifest.tsv: {s['files']} of {s['of']} files, {s['hours']:.2f} h, {s['speakers']} speakers,"
          f" {s['mib']:.1f} MiB ({s['kbps']:.1f} kbit/s)")
    return 0


def _print_summary(out: str, summary: dict[str, dict[str, Any]]) -> None:
    for name, s in summary.items():
        rate = "–" if s["pass_rate"] is None else f"{100 * s['pass_rate']:.0f} %"
        print(f"{name}: {s['utterances']} utterances, {s['hours']:.2f} h, {s['voices']} voices, gate pass {rate}")
    print(f"wrote {out}/manifest.tsv and {out}/report.md")
