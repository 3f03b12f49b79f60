"""Tokenizer commands: ``encode``, ``decode``, ``reconstruct``, ``info`` and ``tokenize``.

Token files are ``.npy`` arrays of shape ``[K, T']`` (K codebooks, int32), written atomically.
Only the argument parsers live here (no torch); the handlers are in :mod:`.commands`.
"""
from __future__ import annotations

import argparse

from ..bundled import bundled_names

DEFAULT_CHECKPOINT = "sitok-default"
HANDLERS = "speechtok.models.commands"


def add_model_commands(subparsers: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, decoding: bool) -> None:
        p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                       help=f"checkpoint directory or bundled model name (default: {DEFAULT_CHECKPOINT}; "
                            f"bundled: {', '.join(bundled_names('sitok')) or 'none'})")
        p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        if decoding:
            p.add_argument("--steps", type=int, help="Euler steps of the flow-matching decoder (default: the model's)")
            p.add_argument("--cfg", type=float, help="token classifier-free guidance scale (1 = none)")
            p.add_argument("--temperature", type=float,
                           help="scale of the decoder's starting noise (default: the model's; 1 samples the"
                                " prior, lower keeps closer to what the tokens say)")
            p.add_argument("--vocoder",
                           help="vocoder override: a vocoder checkpoint (directory or bundled name), or"
                                " 'griffin-lim', the explicit no-training fallback (default: the checkpoint's own)")
            p.add_argument("--seed", type=int, default=0,
                           help="noise seed of the decoder (default: 0, so the same tokens always decode to the same audio)")
            p.add_argument("--prompt", metavar="AUDIO",
                           help="SiTok: another recording of the voice; decoding continues its voice and channel"
                                " (an in-context prefix, not part of the output)")

    p = subparsers.add_parser("encode", help="audio file → token file (.npy)",
                              description="Encode an audio file (any rate, mono or mixed down) into SiTok tokens [K, T']"
                                          " (int32) or, with a HoliTok checkpoint, latents [128, T'] (float32).")
    p.add_argument("input", help="audio file (wav, flac, ogg, mp3 where supported)")
    p.add_argument("-o", "--output", required=True, help="token file to write (.npy)")
    common(p, decoding=False)
    p.set_defaults(func=f"{HANDLERS}:encode")

    p = subparsers.add_parser("decode", help="token file (.npy) → audio file",
                              description="Decode a token file [K, T'] written by 'speechtok encode' back to audio.")
    p.add_argument("input", help="token file (.npy)")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav, .flac or .ogg)")
    common(p, decoding=True)
    p.set_defaults(func=f"{HANDLERS}:decode")

    p = subparsers.add_parser("reconstruct", help="audio → tokens → audio in one go",
                              description="Encode and decode an audio file; prints the bitrate and token count.")
    p.add_argument("input", help="audio file")
    p.add_argument("output", help="audio file to write (.wav, .flac or .ogg)")
    common(p, decoding=True)
    p.set_defaults(func=f"{HANDLERS}:reconstruct")

    p = subparsers.add_parser("info", help="describe a checkpoint (tokenizer or vocoder)",
                              description="Print a checkpoint's preset, size, rates, hashes, training summary and measured quality.")
    p.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT, help="checkpoint directory or bundled name")
    p.add_argument("--json", action="store_true",
                   help="print the whole description as JSON (config, hashes, rates, training data, quality)")
    p.set_defaults(func=f"{HANDLERS}:info")

    p = subparsers.add_parser(
        "tokenize", help="tokenize a whole folder or manifest (batched, resumable)",
        description=("Encode every audio file of a folder or manifest into OUTDIR/<relative path>.npy, or Parquet"
                     " shards with --format parquet. Reruns skip files already done; every file is written"
                     " atomically, and the folder is locked while a run writes into it. OUTDIR/tokens.json records the"
                     " checkpoint and its hash; failures are listed in OUTDIR/failed.tsv."))
    p.add_argument("input", help="folder of audio files or manifest.tsv")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio seconds per batch (default 120)")
    p.add_argument("--format", choices=("npy", "parquet"), default="npy",
                   help="npy: one .npy per file (default); parquet: size-bounded shards with codes, durations,"
                        " speakers, transcripts and the tokenizer's hash, plus index.json (pip install 'speechtok[parquet]')")
    p.add_argument("--shard-mb", type=float, default=256.0, help="Parquet shard size in MiB of codes (default 256)")
    p.add_argument("--engine", choices=("local", "torchrun", "ray"), default="local",
                   help="local: this process (default); torchrun: one share per rank, launched as 'torchrun"
                        " --nproc_per_node N -m speechtok.cli tokenize ... --engine torchrun'; ray: Ray Data actors"
                        " (RAY_ADDRESS for a cluster, else a local one; pip install 'speechtok[ray]')")
    p.add_argument("--workers", type=int, default=2, help="Ray actors, each with one model (default 2)")
    p.add_argument("--items-per-shard", type=int, default=256,
                   help="files per Ray work unit and output shard; a rerun skips finished ones (default 256)")
    common(p, decoding=False)
    p.set_defaults(func=f"{HANDLERS}:tokenize")
