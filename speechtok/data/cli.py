"""``speechtok manifest``: build a manifest from a folder of audio (+ transcripts)."""
from __future__ import annotations

import argparse

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


def _run_manifest(args: argparse.Namespace) -> int:
    path = build_manifest(args.audio_dir, args.output)
    rows = read_manifest(path)
    hours = sum(r.seconds for r in rows) / 3600
    print(f"wrote {path}: {len(rows)} files, {hours:.2f} h, {len({r.speaker for r in rows})} speakers")
    return 0
