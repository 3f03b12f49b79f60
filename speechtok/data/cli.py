"""``speechtok manifest`` and the ``speechtok data`` group (``synth``: build a corpus; ``report``;
``pack``: an Opus copy to carry).

Registration imports nothing heavy: the data-engine handlers are named as ``module:function``
strings and imported only when they run.
"""
from __future__ import annotations

import argparse

from ..fileio import check_output
from .manifest import build_manifest, read_manifest


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "manifest",
        help="build a manifest.tsv from a folder of audio files",
        description=(
            "Scan AUDIO_DIR recursively for audio files and write a manifest (path, seconds, speaker,"
            " transcript). A transcript is read from <stem>.txt or <stem>.lab beside each file; the"
            " speaker is the first sub-folder name."
        ),
    )
    p.add_argument("audio_dir", help="folder with audio files")
    p.add_argument("-o", "--output", required=True, help="manifest file to write (e.g. train.tsv)")
    p.set_defaults(func=_run_manifest)
    _add_engine_commands(subparsers)


def _add_engine_commands(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "data", help="the offline data engine: build a training corpus (synth) or its report",
        description="Build a training corpus offline: real speech with Moonshine pseudo-labels, neural and"
                    " classic TTS voices, speaker augmentation, a Moonshine quality gate. See docs/data_engine.md.")
    commands = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    synth = commands.add_parser(
        "synth", help="build or continue a corpus (FLAC + manifest.tsv + report.md)",
        description="Build a corpus into OUT, or continue the one there: a rerun with the same settings skips"
                    " every utterance already in OUT/journal.jsonl. Hours may be raised on a rerun.")
    synth.add_argument("--out", required=True, help="corpus folder (created; resumed when it exists)")
    synth.add_argument("--preset", default="corpus-v1", help="named config (corpus-v1, smoke); default corpus-v1")
    synth.add_argument("--config", help="YAML overriding the preset (e.g. configs/data-corpus-v1.yaml)")
    synth.add_argument("--hours", action="append", metavar="SOURCE=H",
                       help="hours to keep for one source (repeatable), e.g. --hours kokoro=20")
    synth.add_argument("--seed", type=int, help="seed of the whole plan (default: the config's, 0)")
    synth.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    synth.set_defaults(func="speechtok.data.synth_cli:run_synth")
    report = commands.add_parser(
        "report", help="rebuild OUT/manifest.tsv and OUT/report.md from OUT/journal.jsonl",
        description="Rebuild a corpus folder's manifest and report from its journal (no audio is made).")
    report.add_argument("out", help="corpus folder written by 'speechtok data synth'")
    report.set_defaults(func="speechtok.data.synth_cli:run_report")
    pack = commands.add_parser(
        "pack", help="a size-capped Ogg/Opus copy of a corpus (to carry it, e.g. to a lent GPU)",
        description="Copy a seeded, proportional selection of a corpus as Ogg/Opus files with a manifest,"
                    " stopping at --max-mb. Resumable: a rerun with the same input and settings continues.")
    pack.add_argument("source", help="manifest.tsv (or lhotse CutSet/Shar) of the corpus")
    pack.add_argument("-o", "--output", required=True, help="pack folder (created; resumed when it is a pack)")
    pack.add_argument("--kbps", type=float, default=12.0, help="approximate Opus bitrate (default 12)")
    pack.add_argument("--max-mb", type=float, default=60.0, help="size cap in MiB (default 60)")
    pack.add_argument("--max-rate", type=int, default=24000, help="highest sample rate kept (default 24000)")
    pack.add_argument("--seed", type=int, default=0, help="seed of the selection order (default 0)")
    pack.add_argument("--workers", type=int, default=1,
                      help="threads encoding ahead (default 1; the pack is the same for any number)")
    pack.set_defaults(func="speechtok.data.synth_cli:run_pack")


def _run_manifest(args: argparse.Namespace) -> int:
    check_output(args.output, what="manifest")
    path = build_manifest(args.audio_dir, args.output)
    rows = read_manifest(path)
    hours = sum(r.seconds for r in rows) / 3600
    print(f"wrote {path}: {len(rows)} files, {hours:.2f} h, {len({r.speaker for r in rows})} speakers")
    return 0
