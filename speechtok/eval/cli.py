"""``speechtok eval``: score systems (codecs, identity, SiTok checkpoints) on a manifest."""
from __future__ import annotations

import argparse
import sys

from .codecs import CODECS
from .groups import DEFAULT_GROUPS, DEFAULT_WORKERS, METRIC_GROUPS


def add_eval_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate systems on a manifest (WER, STOI, PESQ, SIM, ...) and write an HTML report",
        description=(
            "Run every system on every file of the manifest and score the reconstructions against the"
            " originals. Writes results.jsonl, summary.csv, summary.md and index.html into REPORT_DIR;"
            " reruns reuse cached per-file results. A system is 'identity', a codec"
            f" ({', '.join(CODECS)}), a SiTok checkpoint directory or a bundled model name."
        ),
    )
    p.add_argument("--systems", required=True,
                   help="comma-separated systems, e.g. identity,codec2-700c,opus-6k; a SiTok checkpoint may carry "
                        "its own decoding settings, e.g. sitok-default@steps=4@cfg=1 (@codebooks=k: a residual-VQ model's "
                        "first k codebooks only)")
    p.add_argument("--data", required=True, help="manifest.tsv (path, seconds, speaker, transcript)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="report folder (created)")
    p.add_argument(
        "--metrics", default=",".join(DEFAULT_GROUPS),
        help=f"comma-separated metric groups or columns, or 'all' (groups: {', '.join(METRIC_GROUPS)};"
        " default: %(default)s; dnsmos costs ~5 s per 8 s clip)",
    )
    p.add_argument("--asr-judge", default="whisper-base",
                   help="ASR judge: whisper-base (clip-length window, fast), whisper-base-30s (standard 30 s window)"
                   " or package.module:factory (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N files")
    p.add_argument("--samples", type=int, default=None, help="files shown with players in the HTML (default: all)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML report")
    p.add_argument("--vocoder", default="checkpoint",
                   help="vocoder for SiTok systems: 'checkpoint' (its own), 'griffin-lim', or a vocoder checkpoint"
                        " (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="SiTok decoder steps (default: the checkpoint's)")
    p.add_argument("--cfg", type=float, default=None, help="SiTok guidance scale (default: the checkpoint's)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help="processes scoring files side by side, one thread each (default: %(default)s, one per core"
                        " up to 4; 1 runs everything in this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from ..extras import optional_import
    from .groups import GROUP_MODULES, PIPELINE_MODULES, parse_metrics

    modules = PIPELINE_MODULES + tuple(m for g in parse_metrics(args.metrics) for m in GROUP_MODULES[g])
    for module in modules:  # before any work: one line naming the extra, not a traceback in a worker
        optional_import(module, "eval", "speechtok eval")
    from .pipeline import evaluate
    from .summary import markdown_table

    result = evaluate(
        [s.strip() for s in args.systems.split(",") if s.strip()], args.data, args.output,
        metrics=args.metrics, asr_judge=args.asr_judge, limit=args.limit, samples=args.samples,
        html=not args.no_html, progress=not args.quiet,
        vocoder=None if args.vocoder == "checkpoint" else args.vocoder, steps=args.steps, cfg=args.cfg,
        workers=args.workers,
    )
    print(markdown_table(result.rows, result.columns))
    for failure in result.failures:
        print(f"warning: {failure['system']} / {failure['file']}: {failure['error']}", file=sys.stderr)
    print(f"wrote {result.out_dir}/summary.md, summary.csv, results.jsonl"
          + ("" if args.no_html else ", index.html") + f" in {result.meta['seconds_total']:.0f} s")
    return 0
