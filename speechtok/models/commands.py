"""Handlers of the tokenizer commands (parsers in :mod:`.cli`): imported only when a command runs."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..audio import AUDIO_FORMATS, load_audio, save_audio
from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..bundled import load_checkpoint_kind
from ..config import from_dict
from ..errors import DataError, SpeechtokError
from ..fileio import atomic_path, check_output, check_output_dir, exclusive_lock, load_npy
from .holitok import HoliTok
from .sitok import SiTok
from .sitok_config import SiTokConfig, check_decoding_scale


def _load(args: argparse.Namespace) -> SiTok | HoliTok:
    """The checkpoint's model, SiTok (discrete tokens) or HoliTok (continuous latents)."""
    from .corpus import load_tokenizer

    decoding_flags = (getattr(args, "steps", None) is not None or getattr(args, "cfg", None) is not None
                      or getattr(args, "temperature", None) is not None
                      or getattr(args, "vocoder", None) or getattr(args, "prompt", None))
    if decoding_flags and load_checkpoint_kind(args.checkpoint) == "holitok":
        raise DataError("--steps, --cfg, --temperature, --vocoder and --prompt apply to SiTok; HoliTok decodes"
                        " latents directly to 48 kHz audio")
    return load_tokenizer(args.checkpoint, args.device)


def _decode_kwargs(model: SiTok | HoliTok, args: argparse.Namespace,
                   prompt: tuple[np.ndarray, int] | None = None) -> dict:
    if isinstance(model, HoliTok):
        return {}
    kwargs = {"steps": args.steps, "cfg": args.cfg, "temperature": args.temperature, "vocoder": args.vocoder,
              "generator": _generator(args)}
    if prompt is not None:
        kwargs.update(prompt=torch.from_numpy(prompt[0]), prompt_sample_rate=prompt[1])
    return kwargs


def _load_prompt(args: argparse.Namespace) -> tuple[np.ndarray, int] | None:
    """The --prompt recording (read before the model loads, so a bad file fails fast)."""
    return load_audio(args.prompt) if args.prompt else None


def _generator(args: argparse.Namespace) -> torch.Generator:
    return torch.Generator().manual_seed(args.seed)


def encode(args: argparse.Namespace) -> int:
    check_output(args.output, inputs=[args.input], suffixes=(".npy",), what="token file")
    wav, rate = load_audio(args.input)
    model = _load(args)
    codes = model.encode(torch.from_numpy(wav)[None, None], rate)[0]
    _save_tokens(Path(args.output), codes)
    if isinstance(model, HoliTok):
        print(f"{args.output}: {codes.shape[-1]} latent frames × {codes.shape[0]} dims, {model.latent_rate:g} Hz")
    else:
        print(f"{args.output}: {codes.shape[-1]} tokens × {codes.shape[0]} codebook(s), "
              f"{model.token_rate:g} Hz, {model.bitrate:g} bps")
    return 0


def decode(args: argparse.Namespace) -> int:
    check_output(args.output, inputs=[args.input, *([args.prompt] if args.prompt else [])],
                 suffixes=tuple(AUDIO_FORMATS), what="audio output")
    path = Path(args.input)
    codes = load_npy(path, "token")
    if codes.ndim != 2 or codes.shape[-1] == 0 or not (np.issubdtype(codes.dtype, np.integer)
                                                      or np.issubdtype(codes.dtype, np.floating)):
        raise DataError(f"{path}: expected a token array [K, T'] or latents [D, T'] as 'speechtok encode' writes,"
                        f" got {codes.dtype} {list(codes.shape)}")
    _check_decoding_args(args)
    prompt = _load_prompt(args)
    model = _load(args)
    if isinstance(model, HoliTok):
        if codes.shape[0] != model.latent_dim or not np.issubdtype(codes.dtype, np.floating):
            raise DataError(f"{path}: {args.checkpoint} decodes float latents [{model.latent_dim}, T'],"
                            f" got {codes.dtype} {list(codes.shape)}")
        if not np.isfinite(codes).all():
            raise DataError(f"{path}: latents contain NaN or Inf")
        wav = model.decode(torch.from_numpy(codes.astype(np.float32))[None])
    else:
        if not np.issubdtype(codes.dtype, np.integer) or not 1 <= codes.shape[0] <= model.codebooks:
            expected = ("[1, T'] (one codebook)" if model.codebooks == 1 else
                        f"[k, T'] (its first k <= {model.codebooks} codebooks)")
            raise DataError(f"{path}: {args.checkpoint} decodes integer tokens {expected},"
                            f" got {codes.dtype} {list(codes.shape)}")
        if int(codes.min()) < 0 or int(codes.max()) >= model.codebook_size:
            raise DataError(f"{path}: token values must lie in 0..{model.codebook_size - 1},"
                            f" found {int(codes.min())}..{int(codes.max())}")
        wav = model.decode(torch.from_numpy(codes.astype(np.int64))[None], **_decode_kwargs(model, args, prompt))
    save_audio(args.output, wav[0, 0], model.sample_rate)
    print(f"{args.output}: {wav.shape[-1] / model.sample_rate:.2f} s at {model.sample_rate} Hz")
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    check_output(args.output, inputs=[args.input, *([args.prompt] if args.prompt else [])],
                 suffixes=tuple(AUDIO_FORMATS), what="audio output")
    wav, rate = load_audio(args.input)
    _check_decoding_args(args)
    prompt = _load_prompt(args)
    model = _load(args)
    out = model.reconstruct(torch.from_numpy(wav)[None, None], rate, **_decode_kwargs(model, args, prompt))
    save_audio(args.output, out[0, 0], model.sample_rate)
    if isinstance(model, HoliTok):
        print(f"{args.output}: {len(wav) / rate:.2f} s → {model.num_latents(len(wav), rate)} latents"
              f" ({model.latent_rate:g} Hz × {model.latent_dim} dims) → {model.sample_rate} Hz audio")
        return 0
    tokens = model.num_tokens(len(wav), rate)
    print(f"{args.output}: {len(wav) / rate:.2f} s → {tokens} tokens ({model.token_rate:g} Hz × "
          f"{model.bits_per_token} bits = {model.bitrate:g} bps) → {model.sample_rate} Hz audio")
    return 0


def _check_decoding_args(args: argparse.Namespace) -> None:
    """Decoding settings refused before the model loads (NaN guidance would decode to NaN audio)."""
    if args.steps is not None and args.steps < 1:
        raise DataError(f"--steps must be >= 1, got {args.steps}")
    for flag, value in (("--cfg", args.cfg), ("--temperature", args.temperature)):
        if value is not None:
            check_decoding_scale(value, flag)


def info(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.checkpoint, expected_kind=None)
    if args.json:
        print(json.dumps(describe_checkpoint(loaded), indent=2, sort_keys=True))
        return 0
    meta = loaded.meta
    if loaded.kind == "vocos":
        lines = _vocos_summary(loaded)
    elif loaded.kind == "sitok":
        lines = _sitok_summary(loaded)
    elif loaded.kind == "ardit":
        lines = _ardit_summary(loaded)
    elif loaded.kind == "char-ngram":
        cfg = loaded.config
        lines = [f"model        character {cfg['order']}-gram text LM ({cfg['vocabulary']} vocabulary, n-grams of 3+"
                 f" symbols seen {cfg['min_count']}+ times, from {cfg['sentences']:,} sentences)"]
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


def describe_checkpoint(loaded: LoadedCheckpoint) -> dict:
    """A checkpoint's description as data (``speechtok info --json``): kind, config, hashes, size,
    rates, and everything recorded in its info (training data, measured quality)."""
    meta = loaded.meta
    description = {
        "checkpoint": str(loaded.directory), "kind": loaded.kind, "config": loaded.config,
        "config_sha256": meta["config_sha256"], "weights": meta["weights"],
        "parameters": sum(v.numel() for v in loaded.state.values()),
        **loaded.info,
    }
    runs = [run["train_data"] for run in _training_runs(loaded.info.get("training"))
            if run.get("train_data", {}).get("hours") is not None]
    if runs:  # the headline a user compares tokenizers by: how much speech, how many voices (the widest run)
        widest = max(runs, key=lambda data: data["hours"])
        description["training_data"] = {
            "hours": widest["hours"], "voices": widest["speakers"],
            **{k: v for k, v in widest.items() if k not in ("hours", "speakers")},
            "runs": [{"manifest": d["manifest"], "hours": d["hours"], "voices": d["speakers"]} for d in runs]}
    if loaded.kind == "sitok":
        cfg = from_dict(SiTokConfig, loaded.config, where=f"{loaded.directory}/config")
        description.update(sample_rate=cfg.mel.sample_rate, token_rate=cfg.token_rate, codebooks=cfg.codebooks,
                           bits_per_token=cfg.bits_per_token, bitrate=cfg.bitrate)
    return description


def _training_runs(training: dict | None) -> list[dict]:
    """A checkpoint's training runs, the last first, following each run's ``--init`` checkpoint."""
    runs = []
    while training:
        runs.append(training)
        training = (training.get("initialised_from") or {}).get("training")
    return runs


def _sitok_summary(loaded: LoadedCheckpoint) -> list[str]:
    cfg = from_dict(SiTokConfig, loaded.config, where=f"{loaded.directory}/config")
    n_params = sum(v.numel() for k, v in loaded.state.items() if not k.startswith("quantizer."))
    codebooks = (f"{cfg.codebook_size}-entry codebook" if cfg.codebooks == 1 else
                 f"{cfg.codebooks} residual {cfg.codebook_size}-entry codebooks")
    bits = f"{cfg.bits_per_token} bits" if cfg.codebooks == 1 else f"{cfg.codebooks} × {cfg.bits_per_token // cfg.codebooks} bits"
    return [
        f"model        SiTok preset {cfg.name} ({n_params / 1e6:.2f} M parameters + {codebooks})",
        f"layers       encoder {cfg.encoder_layers}, decoder {cfg.decoder_layers}, CTC {cfg.ctc_layers}; "
        f"width {cfg.dim}, MLP {cfg.mlp_dim}, heads {cfg.heads}",
        f"tokens       {cfg.token_rate:g} Hz × {bits} = {cfg.bitrate:g} bps; quantiser {cfg.quantizer}; "
        f"CTC vocabulary {cfg.ctc_vocab}",
        f"audio        {cfg.mel.sample_rate} Hz, {cfg.mel.n_mels}-bin mel at {cfg.mel.frame_rate:g} Hz",
        f"decoding     {cfg.sample_steps} Euler steps, CFG {cfg.cfg_scale:g}, noise temperature {cfg.sample_temperature:g}"
        + ("; shortcut (step-size conditioned)" if cfg.shortcut else "")
        + (f"; one-pass guidance up to CFG {cfg.guidance_max:g} (distilled)" if cfg.guidance_distill else "")
        + (f"; light head: last {cfg.decoder_head_layers} decoder layers iterate" if cfg.decoder_head_layers else ""),
    ]


def _config_and_size(loaded: LoadedCheckpoint, config_class: type) -> tuple[Any, int]:
    """A checkpoint's typed config and its parameter count."""
    cfg = from_dict(config_class, loaded.config, where=f"{loaded.directory}/config")
    return cfg, sum(v.numel() for v in loaded.state.values())


def _ardit_summary(loaded: LoadedCheckpoint) -> list[str]:
    from .ardit_config import ARDiTConfig

    cfg, n_params = _config_and_size(loaded, ARDiTConfig)
    return [
        f"model        AR+DiT preset {cfg.name} ({n_params / 1e6:.2f} M parameters) on {cfg.audio} of {cfg.tokenizer}",
        "decoding     " + ("codes sampled, " if cfg.audio == "tokens" else
                             f"{cfg.sample_steps} Euler steps, CFG {cfg.cfg_scale:g}, ")
        + ("stops where its text aligner plans" if cfg.aligner_layers else f"end-of-speech threshold {cfg.eos_threshold:g}")
        + (f"; default voice {cfg.default_voice}" if cfg.default_voice else ""),
        "asr          " + (_ctc_reading(cfg) if cfg.asr_decoding == "ctc" else "the LM writes the text after the audio, greedy"),
    ]


def _ctc_reading(cfg: Any) -> str:
    encoder = f"CTC over a {cfg.asr_encoder_layers}-layer bidirectional ASR encoder"
    if cfg.asr_beam_width == 1:
        return f"greedy {encoder}"
    prior = (f" with text LM {cfg.asr_text_lm} (weight {cfg.asr_lm_weight:g}, bonus {cfg.asr_unit_bonus:g} per letter)"
             if cfg.asr_text_lm else "")
    return f"{encoder}, beam {cfg.asr_beam_width}{prior}"


def _vocos_summary(loaded: LoadedCheckpoint) -> list[str]:
    from ..vocoder.vocos_config import VocosConfig

    cfg, n_params = _config_and_size(loaded, VocosConfig)
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
    from .corpus import token_array

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, token_array(codes))


def tokenize(args: argparse.Namespace) -> int:
    from ..data.lhotse_io import is_lhotse
    from ..data.manifest import AUDIO_SUFFIXES, Utterance, read_corpus
    from ..data.token_sinks import TokenItem
    from .corpus import TokenizeJob, run_local, run_ray, run_torchrun

    source = Path(args.input)
    if source.is_dir() and not is_lhotse(source):
        rows = [Utterance(p.resolve(), 0.0, "", "") for p in sorted(source.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES]
    elif source.exists():
        rows = read_corpus(source)
    else:
        raise DataError(f"{source}: no such folder or manifest")
    if not rows:
        raise DataError(f"{source}: no audio files found")
    for flag, value in (("--shard-mb", args.shard_mb), ("--workers", args.workers),
                        ("--items-per-shard", args.items_per_shard), ("--batch-seconds", args.batch_seconds)):
        if value <= 0:
            raise DataError(f"{flag} must be positive, got {value}")
    root = Path(os.path.commonpath([str(u.path.parent) for u in rows]))
    items = [TokenItem(u.id or u.path.relative_to(root).with_suffix("").as_posix(), u.path, u.speaker, u.transcript)
             for u in rows]
    out = check_output_dir(args.output, what="token folder")
    job = TokenizeJob(str(args.checkpoint), out.resolve(), args.format, args.batch_seconds,
                      args.shard_mb * (1 << 20), args.device, threads=1 if args.engine == "ray" else None)
    progress = lambda total, initial: tqdm(total=total, initial=initial, desc="tokenize", unit="file")  # noqa: E731
    where = str(source.resolve())
    rank = int(os.environ.get("RANK", "0")) if args.engine == "torchrun" else 0
    lock = exclusive_lock(out, f"speechtok tokenize --engine {args.engine}") if rank == 0 else contextlib.nullcontext()
    with lock:
        if args.engine == "torchrun":
            failures = run_torchrun(job, items, where, progress)
        elif args.engine == "ray":
            failures = run_ray(job, items, where, args.workers, args.items_per_shard, progress)
        else:
            failures = run_local(job, items, where, progress)
        if rank == 0 and failures:
            with atomic_path(out / "failed.tsv") as tmp:
                tmp.write_text("".join(f"{p}\t{msg}\n" for p, msg in failures))
            print(f"{len(failures)} file(s) failed, listed in {out / 'failed.tsv'}")
    if rank == 0:
        print(f"{len(items) - len(failures)} of {len(items)} files tokenized into {out}")
    if failures:
        raise SpeechtokError(f"{len(failures)} file(s) could not be tokenized (see {out / 'failed.tsv'})")
    return 0
