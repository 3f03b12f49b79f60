"""Tokenizer commands: ``encode``, ``decode``, ``reconstruct``, ``info`` and ``tokenize``.

Token files are ``.npy`` arrays of shape ``[K, T']`` (K codebooks, int32), written atomically.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_audio, pad_batch, save_audio
from ..checkpoint import LoadedCheckpoint, bundled_names, load_checkpoint, load_checkpoint_kind
from ..config import config_hash, from_dict
from ..errors import AudioError, DataError, SpeechtokError
from ..fileio import atomic_path, load_npy, write_json_atomic
from .holitok import HoliTok
from .sitok import SiTok
from .sitok_config import SiTokConfig

DEFAULT_CHECKPOINT = "sitok-default"


def add_model_commands(subparsers: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, decoding: bool) -> None:
        p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                       help=f"checkpoint directory or bundled model name (default: {DEFAULT_CHECKPOINT}; "
                            f"bundled: {', '.join(bundled_names('sitok')) or 'none'})")
        p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        if decoding:
            p.add_argument("--steps", type=int, help="Euler steps of the flow-matching decoder (default: the model's)")
            p.add_argument("--cfg", type=float, help="token classifier-free guidance scale (1 = none)")
            p.add_argument("--vocoder",
                           help="vocoder override: a vocoder checkpoint (directory or bundled name), or"
                                " 'griffin-lim', the explicit no-training fallback (default: the checkpoint's own)")
            p.add_argument("--seed", type=int, default=0, help="noise seed of the decoder (default: 0)")

    p = subparsers.add_parser("encode", help="audio file → token file (.npy)",
                              description="Encode an audio file (any rate, mono or mixed down) into SiTok tokens [K, T']"
                                          " (int32) or, with a HoliTok checkpoint, latents [128, T'] (float32).")
    p.add_argument("input", help="audio file (wav, flac, ogg, mp3 where supported)")
    p.add_argument("-o", "--output", required=True, help="token file to write (.npy)")
    common(p, decoding=False)
    p.set_defaults(func=_encode)

    p = subparsers.add_parser("decode", help="token file (.npy) → audio file",
                              description="Decode a token file [K, T'] written by 'speechtok encode' back to audio.")
    p.add_argument("input", help="token file (.npy)")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav, .flac or .ogg)")
    common(p, decoding=True)
    p.set_defaults(func=_decode)

    p = subparsers.add_parser("reconstruct", help="audio → tokens → audio in one go",
                              description="Encode and decode an audio file; prints the bitrate and token count.")
    p.add_argument("input", help="audio file")
    p.add_argument("output", help="audio file to write (.wav, .flac or .ogg)")
    common(p, decoding=True)
    p.set_defaults(func=_reconstruct)

    p = subparsers.add_parser("info", help="describe a checkpoint (tokenizer or vocoder)",
                              description="Print a checkpoint's preset, size, rates, hashes, training summary and measured quality.")
    p.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT, help="checkpoint directory or bundled name")
    p.set_defaults(func=_info)

    p = subparsers.add_parser(
        "tokenize", help="tokenize a whole folder or manifest (batched, resumable)",
        description=("Encode every audio file of a folder or manifest into OUTDIR/<relative path>.npy. Reruns skip"
                     " files already done; each token file is written atomically. OUTDIR/tokens.json records the"
                     " checkpoint and its hash; failures are listed in OUTDIR/failed.tsv."))
    p.add_argument("input", help="folder of audio files or manifest.tsv")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio seconds per batch (default 120)")
    common(p, decoding=False)
    p.set_defaults(func=_tokenize)


def _load(args: argparse.Namespace) -> SiTok | HoliTok:
    """The checkpoint's model, SiTok (discrete tokens) or HoliTok (continuous latents)."""
    kind = load_checkpoint_kind(args.checkpoint)
    if kind == "holitok":
        if getattr(args, "steps", None) is not None or getattr(args, "cfg", None) is not None or getattr(args, "vocoder", None):
            raise DataError("--steps, --cfg and --vocoder apply to SiTok; HoliTok decodes latents directly to 48 kHz audio")
        return HoliTok.from_pretrained(args.checkpoint, map_location=args.device)
    return SiTok.from_pretrained(args.checkpoint, map_location=args.device)


def _decode_kwargs(model: SiTok | HoliTok, args: argparse.Namespace) -> dict:
    if isinstance(model, HoliTok):
        return {}
    return {"steps": args.steps, "cfg": args.cfg, "vocoder": args.vocoder, "generator": _generator(args)}


def _generator(args: argparse.Namespace) -> torch.Generator:
    return torch.Generator().manual_seed(args.seed)


def _encode(args: argparse.Namespace) -> int:
    model = _load(args)
    wav, rate = load_audio(args.input)
    codes = model.encode(torch.from_numpy(wav)[None, None], rate)[0]
    _save_tokens(Path(args.output), codes)
    if isinstance(model, HoliTok):
        print(f"{args.output}: {codes.shape[-1]} latent frames × {codes.shape[0]} dims, {model.latent_rate:g} Hz")
    else:
        print(f"{args.output}: {codes.shape[-1]} tokens × {codes.shape[0]} codebook(s), "
              f"{model.token_rate:g} Hz, {model.bitrate:g} bps")
    return 0


def _decode(args: argparse.Namespace) -> int:
    path = Path(args.input)
    codes = load_npy(path, "token")
    model = _load(args)
    if isinstance(model, HoliTok):
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.floating):
            raise DataError(f"{path}: expected a float latent array [{model.latent_dim}, T'], got {codes.dtype} {list(codes.shape)}")
        wav = model.decode(torch.from_numpy(codes.astype(np.float32))[None])
    else:
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"{path}: expected an integer array [K, T'], got {codes.dtype} {list(codes.shape)}")
        wav = model.decode(torch.from_numpy(codes.astype(np.int64))[None], **_decode_kwargs(model, args))
    save_audio(args.output, wav[0, 0], model.sample_rate)
    print(f"{args.output}: {wav.shape[-1] / model.sample_rate:.2f} s at {model.sample_rate} Hz")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    model = _load(args)
    wav, rate = load_audio(args.input)
    out = model.reconstruct(torch.from_numpy(wav)[None, None], rate, **_decode_kwargs(model, args))
    save_audio(args.output, out[0, 0], model.sample_rate)
    if isinstance(model, HoliTok):
        print(f"{args.output}: {len(wav) / rate:.2f} s → {model.num_latents(len(wav), rate)} latents"
              f" ({model.latent_rate:g} Hz × {model.latent_dim} dims) → {model.sample_rate} Hz audio")
        return 0
    tokens = model.num_tokens(len(wav), rate)
    print(f"{args.output}: {len(wav) / rate:.2f} s → {tokens} tokens ({model.token_rate:g} Hz × "
          f"{model.bits_per_token} bits = {model.bitrate:g} bps) → {model.sample_rate} Hz audio")
    return 0


def _info(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.checkpoint, expected_kind=None)
    meta = loaded.meta
    if loaded.kind == "vocos":
        lines = _vocos_summary(loaded)
    elif loaded.kind == "sitok":
        lines = _sitok_summary(loaded)
    else:
        lines = [f"model        {loaded.kind}"]
    lines += [
        f"weights      {meta['weights']['file']} ({meta['weights']['dtype']}), sha256 {meta['weights']['sha256']}",
        f"config hash  {meta['config_sha256']}",
    ]
    for key, value in loaded.info.items():
        if key != "quality":
            lines.extend(_describe(key, value, indent=0))
    print(f"checkpoint   {loaded.directory}\n" + "\n".join(lines))
    if "quality" in loaded.info:
        print("\nmeasured quality:\n" + loaded.info["quality"])
    return 0


def _sitok_summary(loaded: LoadedCheckpoint) -> list[str]:
    cfg = from_dict(SiTokConfig, loaded.config, where=f"{loaded.directory}/config")
    n_params = sum(v.numel() for k, v in loaded.state.items() if not k.startswith("quantizer."))
    bits = int(math.log2(cfg.codebook_size))
    return [
        f"model        SiTok preset {cfg.name} ({n_params / 1e6:.2f} M parameters + {cfg.codebook_size}-entry codebook)",
        f"layers       encoder {cfg.encoder_layers}, decoder {cfg.decoder_layers}, CTC {cfg.ctc_layers}; "
        f"width {cfg.dim}, MLP {cfg.mlp_dim}, heads {cfg.heads}",
        f"tokens       {cfg.token_rate:g} Hz × {bits} bits = {cfg.token_rate * bits:g} bps; quantiser {cfg.quantizer}; "
        f"CTC vocabulary {cfg.ctc_vocab}",
        f"audio        {cfg.mel.sample_rate} Hz, {cfg.mel.n_mels}-bin mel at {cfg.mel.frame_rate:g} Hz",
        f"decoding     {cfg.sample_steps} Euler steps, CFG {cfg.cfg_scale:g}",
    ]


def _vocos_summary(loaded: LoadedCheckpoint) -> list[str]:
    from ..vocoder.vocos_config import VocosConfig

    cfg = from_dict(VocosConfig, loaded.config, where=f"{loaded.directory}/config")
    n_params = sum(v.numel() for v in loaded.state.values())
    return [
        f"model        Vocos vocoder preset {cfg.name} ({n_params / 1e6:.2f} M parameters)",
        f"layers       {cfg.layers} ConvNeXt blocks, width {cfg.dim}, MLP {cfg.intermediate_dim}; "
        f"ISTFT head n_fft {cfg.mel.n_fft}, hop {cfg.mel.hop_length}",
        f"audio        {cfg.mel.n_mels}-bin mel at {cfg.mel.frame_rate:g} Hz → {cfg.mel.sample_rate} Hz waveform",
    ]


def _describe(key: str, value: object, indent: int) -> list[str]:
    """Nested training info as indented ``key  value`` lines."""
    pad = "  " * indent
    if isinstance(value, dict):
        return [f"{pad}{key}"] + [line for k, v in value.items() for line in _describe(k, v, indent + 1)]
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return [f"{pad}{key:<{max(1, 24 - len(pad))}} {value}"]


def _save_tokens(path: Path, codes: torch.Tensor) -> None:
    """Codes as int32, latents as float32, ``[K or D, T']``."""
    if path.suffix != ".npy":
        raise DataError(f"{path}: token files must end in .npy")
    array = codes.cpu().numpy()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array.astype(np.float32 if np.issubdtype(array.dtype, np.floating) else np.int32))


def _tokenize(args: argparse.Namespace) -> int:
    from ..data.manifest import AUDIO_SUFFIXES, read_manifest

    source = Path(args.input)
    if source.is_dir():
        files = sorted(p.resolve() for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    elif source.is_file():
        files = [u.path for u in read_manifest(source)]
    else:
        raise DataError(f"{source}: no such folder or manifest")
    if not files:
        raise DataError(f"{source}: no audio files found")
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    out = Path(args.output)
    model = _load(args)  # from_pretrained verified that this config matches its recorded hash
    continuous = isinstance(model, HoliTok)
    rates = ({"latent_rate": model.latent_rate, "latent_dim": model.latent_dim} if continuous
             else {"token_rate": model.token_rate, "bits_per_token": model.bits_per_token})
    write_json_atomic(out / "tokens.json", {
        "checkpoint": str(args.checkpoint), "config_sha256": config_hash(model.config), **rates,
        "source": str(source.resolve()),
        "layout": f"one {'float32 .npy [D' if continuous else 'int32 .npy [K'}, T'] per audio file, at <relative path>.npy"})
    todo = [(f, out / f.relative_to(root).with_suffix(".npy")) for f in files]
    pending = [(f, t) for f, t in todo if not t.exists()]
    failures: list[tuple[Path, str]] = []
    bar = tqdm(total=len(todo), initial=len(todo) - len(pending), desc="tokenize", unit="file")
    batch: list[tuple[Path, np.ndarray]] = []  # (token file, audio at the model rate)

    def flush() -> None:
        if not batch:
            return
        wav, lengths = pad_batch([w for _, w in batch])
        # HoliTok is causal, so trailing padding cannot change an item's frames; SiTok masks it.
        codes = model.encode(wav, model.sample_rate) if continuous else model.encode(wav, model.sample_rate, lengths=lengths)
        for i, (target, w) in enumerate(batch):
            frames = model.num_latents(len(w), model.sample_rate) if continuous else model.num_tokens(len(w), model.sample_rate)
            _save_tokens(target, codes[i, :, :frames])
        bar.update(len(batch))
        batch.clear()

    for audio_path, target in pending:
        try:
            wav, _ = load_audio(audio_path, model.sample_rate)
        except AudioError as exc:
            failures.append((audio_path, str(exc)))
            bar.update(1)
            continue
        longest = max([len(wav)] + [len(w) for _, w in batch])
        if batch and longest * (len(batch) + 1) > args.batch_seconds * model.sample_rate:
            flush()
        batch.append((target, wav))
    flush()
    bar.close()
    if failures:
        with atomic_path(out / "failed.tsv") as tmp:
            tmp.write_text("".join(f"{p}\t{msg}\n" for p, msg in failures))
        print(f"{len(failures)} file(s) failed, listed in {out / 'failed.tsv'}")
    print(f"{len(todo) - len(failures)} of {len(todo)} files tokenized into {out}")
    if failures:
        raise SpeechtokError(f"{len(failures)} file(s) could not be tokenized (see {out / 'failed.tsv'})")
    return 0
