"""``speechtok export onnx NAME -o DIR``: the parser only (no torch); the handler is in :mod:`.onnx`."""
from __future__ import annotations

import argparse


def add_export_commands(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a tokenizer to run without PyTorch (ONNX)",
                                   description="Export a tokenizer checkpoint to another runtime.")
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser(
        "onnx", help="SiTok or HoliTok → ONNX graphs + manifest.json (pip install 'speechtok[onnx]')",
        description=("Write the checkpoint's networks as ONNX files for onnxruntime, with dynamic batch and time axes,"
                     " and DIR/manifest.json describing them (inputs, outputs, rates, decoding defaults, hashes)."
                     " SiTok: encoder (24 kHz waveform → codes, mel front-end included), decoder velocity step"
                     " (one Euler step, classifier-free guidance inside) and vocoder (mel → waveform). HoliTok:"
                     " encoder (48 kHz waveform → latents) and decoder (latents → waveform). See docs/onnx.md."))
    p.add_argument("checkpoint", metavar="NAME", help="checkpoint directory or bundled model name (e.g. sitok-default)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write (must be empty or new)")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR, replacing the files of a previous export")
    p.set_defaults(func="speechtok.export.onnx:export_command")
